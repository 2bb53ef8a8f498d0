"""Login rate limits as deployed: counted across workers (two apps sharing one database), per
account whatever the address, per client address behind trusted proxies only, and through the
shipped nginx config. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from controlsvc.broker import find_free_port
from tests.integration.test_deploy import DEPLOY, _self_signed
from tests.support.auth import PASSWORD
from tests.support.server import serve
from tests.support.waiting import wait_for

# A window that ends in 2068: no test here can straddle a window boundary.
LIMIT = "3/100 years"
PROBLEM = "application/problem+json"


def _worker(settings, database, **service):
    """Another API worker: its own app (and, before counts were shared, its own counts)."""
    from controlsvc.ops.app import create_app

    changed = settings.service.model_copy(update={"login_rate_limit": LIMIT, **service})
    return create_app(settings.model_copy(update={"service": changed}), database=database)


def _login(client, email, *, address="192.0.2.1", forwarded=None, password="wrong-guess-1"):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post(
        "/api/auth/login",
        json={"email": email, "password": password},
        headers=headers,
        environ_base={"REMOTE_ADDR": address},
    )


def _assert_limited(response):
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    assert int(response.headers["Retry-After"]) >= 1


def test_two_workers_sharing_a_database_share_the_address_count(settings, database):
    workers = [_worker(settings, database).test_client() for _ in range(2)]
    for i in range(3):
        assert _login(workers[i % 2], f"user{i}@example.com").status_code == 401
    _assert_limited(_login(workers[1], "user9@example.com"))
    _assert_limited(_login(workers[0], "user9@example.com"))


def test_the_account_limit_holds_across_addresses_and_workers(auth, settings, database):
    auth.create("target@example.com")
    workers = [_worker(settings, database).test_client() for _ in range(2)]
    for i in range(3):
        response = _login(workers[i % 2], "target@example.com", address=f"10.0.0.{i + 1}")
        assert response.status_code == 401
    # A fourth address on the other worker, even with the right password.
    right = _login(workers[1], "Target@example.com", address="10.0.0.99", password=PASSWORD)
    _assert_limited(right)


def test_behind_a_trusted_proxy_each_client_counts_apart(auth, settings, database):
    auth.create("bystander@example.com")
    client = _worker(settings, database, trusted_proxies="127.0.0.1, ::1").test_client()
    for i in range(3):
        response = _login(
            client, f"u{i}@example.com", address="127.0.0.1", forwarded="198.51.100.1"
        )
        assert response.status_code == 401
    _assert_limited(_login(client, "u9@example.com", address="127.0.0.1", forwarded="198.51.100.1"))
    # Another client behind the same proxy still logs in.
    other = _login(
        client,
        "bystander@example.com",
        address="127.0.0.1",
        forwarded="198.51.100.2",
        password=PASSWORD,
    )
    assert other.status_code == 200, other.get_json()


def test_only_the_last_proxy_count_hops_are_believed(settings, database):
    client = _worker(settings, database, trusted_proxies="127.0.0.1").test_client()
    for i in range(3):
        # The client wrote the first entry itself; nginx appended the address it saw.
        forged = f"203.0.113.{i}, 198.51.100.1"
        assert (
            _login(client, f"u{i}@example.com", address="127.0.0.1", forwarded=forged).status_code
            == 401
        )
    _assert_limited(
        _login(
            client, "u9@example.com", address="127.0.0.1", forwarded="203.0.113.77, 198.51.100.1"
        )
    )


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_a_forged_forwarded_for_from_an_untrusted_peer_does_not_change_the_key(
    settings, database, trusted
):
    client = _worker(settings, database, trusted_proxies=trusted).test_client()
    for i in range(3):
        response = _login(
            client, f"u{i}@example.com", address="192.0.2.50", forwarded=f"10.1.1.{i}"
        )
        assert response.status_code == 401
    _assert_limited(_login(client, "u9@example.com", address="192.0.2.50", forwarded="10.1.1.9"))


# --- through the shipped nginx ----------------------------------------------------------------


def _nginx_site(tmp_path: Path, upstream_port: int) -> tuple[Path, int]:
    cert, key = _self_signed(tmp_path)
    https_port, http_port = find_free_port(), find_free_port()
    site = (
        (DEPLOY / "nginx" / "jaxmba.conf")
        .read_text()
        .replace("/etc/jaxmba/tls/server.crt", str(cert))
        .replace("/etc/jaxmba/tls/server.key", str(key))
        .replace("server 127.0.0.1:5000;", f"server 127.0.0.1:{upstream_port};")
        .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
        .replace("listen [::]:443 ssl http2;", "")
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("listen [::]:80;", "")
    )
    (tmp_path / "jaxmba.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nworker_processes 1;\n"
        "events {}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/jaxmba.conf;\n}}\n"
    )
    return conf, https_port


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_behind_the_shipped_nginx_clients_count_apart_and_cannot_forge(
    auth, settings, database, tmp_path
):
    auth.create("bystander@example.com")
    app = _worker(settings, database, trusted_proxies="127.0.0.1")
    with serve(app) as base:
        conf, port = _nginx_site(tmp_path, int(base.rsplit(":", 1)[1]))
        nginx = subprocess.Popen(
            ["nginx", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"https://127.0.0.1:{port}"

            def client(source: str) -> httpx.Client:
                # Loopback answers all of 127/8: each source address is another client.
                transport = httpx.HTTPTransport(local_address=source, verify=False)
                return httpx.Client(base_url=url, transport=transport, timeout=30)

            def up() -> bool:
                try:
                    with client("127.0.0.9") as http:
                        return http.get("/api/health").status_code in (200, 503)
                except httpx.TransportError:
                    return False

            wait_for(up, timeout=30, message=lambda: _log(tmp_path))
            with client("127.0.0.2") as attacker, client("127.0.0.3") as colleague:
                for i in range(3):
                    response = attacker.post(
                        "/api/auth/login",
                        json={"email": f"u{i}@example.com", "password": "wrong-guess-1"},
                        # Forged: nginx appends the real peer after it.
                        headers={"X-Forwarded-For": f"10.66.0.{i}"},
                    )
                    assert response.status_code == 401, response.text
                refused = attacker.post(
                    "/api/auth/login",
                    json={"email": "u9@example.com", "password": "wrong-guess-1"},
                    headers={"X-Forwarded-For": "10.66.0.99"},
                )
                assert refused.status_code == 429, refused.text
                assert refused.headers["content-type"].startswith(PROBLEM)
                ok = colleague.post(
                    "/api/auth/login",
                    json={"email": "bystander@example.com", "password": PASSWORD},
                )
                assert ok.status_code == 200, ok.text
        finally:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(30)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()


def _log(directory: Path) -> str:
    path = directory / "error.log"
    return path.read_text()[-2000:] if path.exists() else "nginx wrote no log"
