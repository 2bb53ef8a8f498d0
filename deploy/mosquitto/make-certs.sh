#!/bin/sh
# Make a lab's own certificate authority and the broker's TLS server certificate.
#
#   deploy/mosquitto/make-certs.sh DIR BROKER_HOSTNAME [EXTRA_NAME_OR_IP ...]
#
# Writes into DIR (created if missing):
#   ca.key, ca.crt          the lab CA (10 years). Made only if ca.key does not exist yet, so
#                           running the script again renews the server certificate with the same
#                           CA. Keep ca.key offline; copy ca.crt to every enclosure.
#   server.key, server.crt  the broker's key and certificate (825 days), signed by the CA, valid
#                           for BROKER_HOSTNAME and every EXTRA name or IP address given.
# Then, on the broker host:
#   install -o root -g mosquitto -m 0644 DIR/ca.crt DIR/server.crt /etc/mosquitto/certs/
#   install -o root -g mosquitto -m 0640 DIR/server.key /etc/mosquitto/certs/
#   systemctl reload mosquitto        # mosquitto rereads the certificate on SIGHUP
# Needs only openssl (1.1.1 or 3.x). See docs/broker.md, "Certificates".
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 DIR BROKER_HOSTNAME [EXTRA_NAME_OR_IP ...]" >&2
    exit 2
fi
dir=$1
host=$2
shift 2

# subjectAltName: DNS names and IP addresses (clients check the name they connect to).
san="DNS:$host"
for name in "$@"; do
    case $name in
        *[!0-9.]*) case $name in *:*) san="$san,IP:$name" ;; *) san="$san,DNS:$name" ;; esac ;;
        *) san="$san,IP:$name" ;;
    esac
done

mkdir -p "$dir"
umask 077
cd "$dir"

if [ ! -f ca.key ]; then
    cat > ca.cnf <<EOF
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always, issuer
EOF
    openssl req -x509 -new -nodes -newkey rsa:3072 -sha256 -days 3650 \
        -keyout ca.key -out ca.crt -subj "/CN=jaxmba lab CA" \
        -config ca.cnf -extensions v3_ca 2>/dev/null
    rm -f ca.cnf
    echo "made CA: $dir/ca.crt (keep $dir/ca.key offline)"
fi

openssl req -new -nodes -newkey rsa:2048 -sha256 \
    -keyout server.key -out server.csr -subj "/CN=$host" 2>/dev/null

cat > server.ext <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = $san
EOF

openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out server.crt -days 825 -sha256 -extfile server.ext 2>/dev/null
rm -f server.csr server.ext
chmod 0644 ca.crt server.crt
chmod 0600 ca.key server.key
echo "made server certificate: $dir/server.crt for $san"
