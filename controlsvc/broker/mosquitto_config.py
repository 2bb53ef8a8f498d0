"""``mosquitto.conf`` for a broker that jaxmba generates and runs itself (tests, demo, ``run``).

Production uses the hand-written ``deploy/mosquitto/mosquitto.conf`` (TLS listener, system
paths); this renders the same tuning and the same listener split for a loopback broker in a
directory of its own:

* ``service_port``: the control service's own listener. Only the service account exists there
  (its own password file): the API workers, bridges, event feeds and preview relays all log in
  with it, so client ids stay theirs to choose (they never collide with an enclosure's, see
  ``controlsvc.config.sections.MqttSettings.client_id``).
* ``port`` (and the optional ``enclosure_port``): everyone else, enclosures and operators, with
  ``use_username_as_clientid``: the client id is replaced by the user name, so no account can
  take over another's client id (and with it disconnect that client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from controlsvc.broker.errors import InvalidBrokerSetting

__all__ = [
    "AUTOSAVE_INTERVAL_S",
    "DEFAULT_LOG_TYPES",
    "MAX_INFLIGHT_MESSAGES",
    "MAX_PACKET_SIZE",
    "MAX_QUEUED_BYTES",
    "MAX_QUEUED_MESSAGES",
    "PERSISTENT_CLIENT_EXPIRATION",
    "BrokerConfig",
    "render_config",
]

# Per-client queue above the in-flight window, in messages and in payload bytes (whichever is
# reached first; mosquitto then drops what else comes for that client). What matters is the
# bridge's reliable session (state, acks, events): statuses go to a connection of their own
# that never makes the broker queue (docs/bridge.md, "Overload"), so this holds hours of a
# large fleet's events while the bridge is away or behind. mosquitto's default of 1,000 would
# drop them within seconds.
MAX_QUEUED_MESSAGES = 1_000_000
MAX_QUEUED_BYTES = 512 * 1024 * 1024
# Outgoing QoS 1/2 messages in flight per client (default 20): a bridge draining a burst acks in
# batches, and a window of 20 caps throughput at 20 messages per round trip.
MAX_INFLIGHT_MESSAGES = 1_000
# Largest MQTT packet accepted (a client sending more is disconnected): previews are JPEGs of a
# few hundred KB; nothing legitimate comes close to 4 MiB.
MAX_PACKET_SIZE = 4 * 1024 * 1024
# Seconds between saves of retained messages and sessions; a crash loses at most this much
# (a clean stop always saves). Durable intent is also in the database and republished.
AUTOSAVE_INTERVAL_S = 60
# Forget a persistent session (e.g. an enclosure retired without cleanup) after two weeks.
PERSISTENT_CLIENT_EXPIRATION = "14d"
DEFAULT_LOG_TYPES: tuple[str, ...] = ("error", "warning", "notice", "information")

_LOG_TYPES = frozenset(
    {"debug", "error", "warning", "notice", "information", "subscribe", "unsubscribe",
     "websockets", "none", "all"}
)  # fmt: skip
_EXPIRATION_RE = re.compile(r"[1-9][0-9]*[hdwmy]")


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """Everything ``render_config`` puts into a generated ``mosquitto.conf``.

    ``LocalBroker`` fills in what is left at its default: free ports for ``0``, and
    ``password_file``, ``acl_file``, ``persistence_location``, ``log_file`` and ``pid_file``
    inside its directory.
    """

    port: int = 0
    """Listener for enclosures and operators; the client id is forced to the user name
    (``use_username_as_clientid``), as on production's 8883. 0 = any free port."""
    service_port: int = 0
    """The service's listener: only the service account (``service_password_file``), client
    ids free (the service runs many connections under one account). 0 = any free port."""
    host: str = "127.0.0.1"
    """Address the listeners bind to; generated brokers stay on loopback."""
    enclosure_port: int | None = None
    """Optional further listener like ``port`` (0 = any free port)."""
    password_file: Path | None = None
    """Accounts of ``port`` and ``enclosure_port``: enclosures and operators."""
    service_password_file: Path | None = None
    """The service account, alone (``service_port``)."""
    acl_file: Path | None = None
    persistence: bool = True
    persistence_location: Path | None = None
    autosave_interval_s: int = AUTOSAVE_INTERVAL_S
    persistent_client_expiration: str | None = PERSISTENT_CLIENT_EXPIRATION
    max_queued_messages: int = MAX_QUEUED_MESSAGES
    max_queued_bytes: int = MAX_QUEUED_BYTES
    max_inflight_messages: int = MAX_INFLIGHT_MESSAGES
    max_packet_size: int = MAX_PACKET_SIZE
    set_tcp_nodelay: bool = True
    """Without it a QoS 1 round trip on loopback takes ~40-90 ms instead of under 1 ms."""
    log_file: Path | None = None
    """None logs to stderr."""
    log_types: tuple[str, ...] = field(default=DEFAULT_LOG_TYPES)
    pid_file: Path | None = None
    run_as_user: str | None = None
    """``user`` option: the account mosquitto switches to when started as root (it ignores it
    otherwise). Left unset, mosquitto switches to ``mosquitto``, which cannot read files that
    root wrote with mode 0600; ``LocalBroker`` sets it to the current user."""


def _path(name: str, value: Path | None) -> str:
    if value is None:
        raise InvalidBrokerSetting(f"render_config needs {name}")
    text = str(value)
    if any(c in text for c in "\r\n\0"):
        raise InvalidBrokerSetting(f"{name} {text!r} contains a line break or NUL")
    return text


def _check_port(name: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise InvalidBrokerSetting(f"{name} must be 1-65535 (pick a free one first), not {port}")


def _validate(config: BrokerConfig) -> None:
    _check_port("port", config.port)
    _check_port("service_port", config.service_port)
    if config.service_port == config.port:
        raise InvalidBrokerSetting("service_port must differ from port")
    if config.enclosure_port is not None:
        _check_port("enclosure_port", config.enclosure_port)
        if config.enclosure_port in (config.port, config.service_port):
            raise InvalidBrokerSetting("enclosure_port must differ from port and service_port")
    if not config.host or any(c.isspace() for c in config.host):
        raise InvalidBrokerSetting(f"host {config.host!r} is not an address")
    for name in (
        "autosave_interval_s",
        "max_queued_messages",
        "max_queued_bytes",
        "max_inflight_messages",
    ):
        if getattr(config, name) < 0:
            raise InvalidBrokerSetting(f"{name} must not be negative")
    if config.max_packet_size < 20:  # mosquitto refuses less: it would break even tiny packets
        raise InvalidBrokerSetting("max_packet_size must be at least 20 bytes")
    expiration = config.persistent_client_expiration
    if expiration is not None and not _EXPIRATION_RE.fullmatch(expiration):
        raise InvalidBrokerSetting(
            f"persistent_client_expiration {expiration!r} must be a number and one of h d w m y"
            " (e.g. 14d)"
        )
    unknown = sorted(set(config.log_types) - _LOG_TYPES)
    if unknown or not config.log_types:
        raise InvalidBrokerSetting(
            f"log_types {unknown or '()'} invalid; choose from {sorted(_LOG_TYPES)}"
        )
    if config.run_as_user is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", config.run_as_user):
        raise InvalidBrokerSetting(f"run_as_user {config.run_as_user!r} is not a user name")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def render_config(config: BrokerConfig) -> str:
    """The ``mosquitto.conf`` text for ``config``; raises ``InvalidBrokerSetting`` if incomplete."""
    _validate(config)
    password_file = _path("password_file", config.password_file)
    service_password_file = _path("service_password_file", config.service_password_file)
    acl_file = _path("acl_file", config.acl_file)
    out = [
        "# Generated by controlsvc.broker.render_config; regenerated on every start.",
        "# Production uses deploy/mosquitto/mosquitto.conf instead (see docs/broker.md).",
        "",
        "# Each listener names its accounts (one ACL for all): the service's listener has the",
        "# service account alone, the others every enclosure and operator account.",
        "per_listener_settings true",
        "",
        "# Latency and throughput (docs/benchmarks.md): no Nagle delay on QoS 1 round trips,",
        "# and queues deep enough that the bridge loses no event while away or behind.",
        f"set_tcp_nodelay {_bool(config.set_tcp_nodelay)}",
        f"max_queued_messages {config.max_queued_messages}",
        f"max_queued_bytes {config.max_queued_bytes}",
        f"max_inflight_messages {config.max_inflight_messages}",
        f"max_packet_size {config.max_packet_size}",
        "",
    ]
    if config.persistence:
        out += [
            "# Retained messages (state, status, desired) and persistent sessions survive a",
            "# restart; a clean stop saves, a crash loses at most autosave_interval seconds.",
            "persistence true",
            f"persistence_location {_path('persistence_location', config.persistence_location)}",
            f"autosave_interval {config.autosave_interval_s}",
        ]
    else:
        out.append("persistence false")
    if config.persistent_client_expiration is not None:
        out.append(f"persistent_client_expiration {config.persistent_client_expiration}")
    out.append("")
    if config.log_file is not None:
        out.append(f"log_dest file {_path('log_file', config.log_file)}")
    else:
        out.append("log_dest stderr")
    out += [f"log_type {log_type}" for log_type in config.log_types]
    out += [
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]
    if config.pid_file is not None:
        out.append(f"pid_file {_path('pid_file', config.pid_file)}")
    if config.run_as_user is not None:
        out.append(f"user {config.run_as_user}")
    out += [
        "",
        "# The control service (API workers, bridges): one account, many connections, so the",
        "# client ids are theirs to choose; no other account can log in here.",
        f"listener {config.service_port} {config.host}",
        "allow_anonymous false",
        f"password_file {service_password_file}",
        f"acl_file {acl_file}",
        "",
        "# Enclosures and operators: the client id is forced to the user name, so no account",
        "# can take over (and disconnect) another one's connection by reusing its client id.",
        *_bound_listener(config.port, config.host, password_file, acl_file),
    ]
    if config.enclosure_port is not None:
        out += ["", *_bound_listener(config.enclosure_port, config.host, password_file, acl_file)]
    return "\n".join(out) + "\n"


def _bound_listener(port: int, host: str, password_file: str, acl_file: str) -> list[str]:
    return [
        f"listener {port} {host}",
        "use_username_as_clientid true",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
    ]
