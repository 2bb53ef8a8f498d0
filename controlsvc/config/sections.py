"""The sections of the service configuration, one pydantic model per INI section ([DATABASE],
[SECRETS], [MQTT], [MAIL], [SERVICE], [JABS]), with their defaults and validation.

``controlsvc.config.settings`` assembles them into ``Settings`` and loads them.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from limits import parse
from limits.storage import SCHEMES  # type: ignore[attr-defined]  # the registry of schemes
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)
from sqlalchemy.engine import URL, make_url

from schemas.messages import MAX_STATUS_INTERVAL_S, MIN_STATUS_INTERVAL_S

# Random secrets are this many bytes of entropy, written as hex (the original's format).
SECRET_BYTES = 32
# The service's connections append "-preview-<pid>-<hex>" and the like to [MQTT] client_id.
MAX_CLIENT_ID_BASE = 100
_ENCLOSURE_ID_CHARS = re.compile(r"[a-z0-9-]+")  # every enclosure id (schemas.ids) is made of these
# `[SERVICE] ratelimit_storage_uri` that keeps the rate limits' counts in the service database.
DATABASE_STORAGE = "database"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatabaseSettings(_Section):
    dialect: Literal["postgres", "sqlite"] = Field(
        "sqlite", description="postgres (production) or sqlite (development)"
    )
    username: str = Field("", description="PostgreSQL user")
    password: SecretStr = Field(SecretStr(""), description="PostgreSQL password")
    host: str = Field("127.0.0.1", description="PostgreSQL host")
    port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port")
    database: str = Field(
        "var/jaxmba.sqlite",
        description="PostgreSQL database name, or the SQLite file path (relative to the working "
        "directory)",
    )
    url: str = Field(
        "", description="A full SQLAlchemy URL; when set it wins over the fields above"
    )
    echo: bool = Field(False, description="Log every SQL statement")

    @field_validator("url")
    @classmethod
    def _url_parses(cls, value: str) -> str:
        if value:
            try:
                make_url(value)
            except Exception as exc:
                raise ValueError(f"not a database URL ({exc})") from exc
        return value

    def sqlalchemy_url(self) -> URL:
        if self.url:
            return make_url(self.url)
        if self.dialect == "sqlite":
            if self.database in ("", ":memory:"):
                return URL.create("sqlite+pysqlite", database=":memory:")
            return URL.create("sqlite+pysqlite", database=str(Path(self.database)))
        return URL.create(
            "postgresql+psycopg2",
            username=self.username or None,
            password=self.password.get_secret_value() or None,
            host=self.host or None,
            port=self.port,
            database=self.database or "jaxmba",
        )


class SecretsSettings(_Section):
    secret_key: SecretStr = Field(
        SecretStr(""), description="Flask secret key (hex); `create_secrets` fills it"
    )
    jwt_secret_key: SecretStr = Field(
        SecretStr(""), description="Key that signs access and refresh tokens (hex)"
    )
    metrics_token: SecretStr = Field(
        SecretStr(""),
        description="Static bearer token Prometheus may scrape /metrics with (empty = only an "
        "admin or operator access token)",
    )

    def empty(self) -> list[str]:
        """Required secrets that are empty (the optional metrics_token is not required)."""
        return [
            name for name, value in self if name != "metrics_token" and not value.get_secret_value()
        ]


class MqttSettings(_Section):
    host: str = Field("127.0.0.1", description="Broker host")
    port: int = Field(
        1883, ge=0, le=65535, description="Broker port (0 = any free port for the embedded broker)"
    )
    username: str = Field("jaxmba_service", description="The service's broker account")
    password: SecretStr = Field(SecretStr(""), description="The service's broker password")
    tls: bool = Field(False, description="Connect with TLS")
    ca_file: str = Field("", description="CA bundle for TLS (empty = system store)")
    topic_prefix: str = Field("jaxmba/v1", description="Prefix of every topic")
    client_id: str = Field(
        "jaxmba_service",
        description="Base MQTT client id of the service's connections (bridge, API, event feed,"
        " preview); holds a character no enclosure id has, such as '_', so that no enclosure"
        " (whose client id is its id) can ever take a service connection's id",
    )
    keepalive_s: int = Field(5, ge=1, le=600, description="MQTT keepalive (seconds)")
    embedded: bool = Field(
        False,
        description="`run` starts and manages a local Mosquitto itself (development default)",
    )
    embedded_dir: str = Field(
        "var/mosquitto", description="Where the embedded broker keeps config, data and log"
    )
    password_file: str = Field(
        "",
        description="Mosquitto password file in which the service creates enclosure accounts "
        "(empty: accounts are managed outside the service, e.g. with `jaxmba-ctl provision`)",
    )
    reload_pid_file: str = Field(
        "",
        description="Pid file of the broker to send SIGHUP after changing accounts (empty: an "
        "external watcher such as deploy/systemd/jaxmba-broker-reload.path reloads it)",
    )

    @field_validator("client_id")
    @classmethod
    def _client_id_is_no_enclosure_id(cls, value: str) -> str:
        if not value or len(value) > MAX_CLIENT_ID_BASE or any(c in value for c in "/+#\0"):
            raise ValueError(
                f"must be 1-{MAX_CLIENT_ID_BASE} characters without / + # or NUL, got {value!r}"
            )
        if _ENCLOSURE_ID_CHARS.fullmatch(value):
            raise ValueError(
                f"{value!r} uses only characters an enclosure id may have, so an enclosure"
                " could connect with the same client id and disconnect the service; add one"
                " it cannot have, such as '_' (the default is 'jaxmba_service')"
            )
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_plain(cls, value: str) -> str:
        if (
            not value
            or any(c in value for c in "+#")
            or value.startswith("/")
            or value.endswith("/")
        ):
            raise ValueError("must be non-empty, without + or #, and not start or end with /")
        return value


class MailSettings(_Section):
    backend: Literal["smtp", "console"] = Field(
        "console", description="smtp, or console (print mails to the log; development)"
    )
    host: str = Field("localhost", description="SMTP host")
    port: int = Field(25, ge=1, le=65535, description="SMTP port")
    username: str = Field("", description="SMTP user (empty = no login)")
    password: SecretStr = Field(SecretStr(""), description="SMTP password")
    security: Literal["none", "starttls", "ssl"] = Field("none", description="SMTP transport")
    sender: str = Field("jaxmba@localhost", description="From address")
    timeout_s: float = Field(10.0, gt=0, le=300, description="SMTP timeout")


# An origin as browsers send it: scheme, host, optional port; nothing else.
_ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?")


class ServiceSettings(_Section):
    host: str = Field("127.0.0.1", description="Address `run` binds to")
    port: int = Field(5000, ge=0, le=65535, description="Port `run` binds to")
    public_url: str = Field(
        "http://localhost:5000", description="Base URL used in emailed invite and reset links"
    )
    workers: int = Field(2, ge=1, le=64, description="WSGI worker processes for `run`")
    threads: int = Field(
        64, ge=1, le=1024, description="Threads per worker (SSE streams each hold one)"
    )
    log_level: str = Field("INFO", description="Root log level")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text, or json: one JSON object per line with enclosure, session and "
        "command ids as fields (for Loki/ELK); API, bridge and the demo's agents",
    )
    status_interval_s: float = Field(
        5.0,
        ge=MIN_STATUS_INTERVAL_S,
        le=MAX_STATUS_INTERVAL_S,
        description="Agents' status interval",
    )
    lost_after_intervals: float = Field(
        3.0, ge=1, le=100, description="Silence of this many status intervals means lost"
    )
    command_timeout_s: int = Field(30, ge=1, le=3600, description="Default command timeout")
    session_start_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A session enclosure not recording this long after its start (or not "
        "reporting its last segment this long after the end) is timed_out",
    )
    session_lost_grace_s: float = Field(
        60.0,
        gt=0,
        le=24 * 3600,
        description="A session enclosure lost or offline longer than this is timed_out",
    )
    status_history_days: int = Field(30, ge=1, le=3650, description="Status history retention")
    status_history_every_s: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="0: keep every status in the history; else one per enclosure per this many "
        "seconds, plus every status whose state or what a user sees changed (the latest "
        "status is always kept on the enclosure)",
    )
    status_event_every_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="An enclosure's status goes to the live feed (an enclosure.status event) at "
        "once when what a user sees changes, else at most once per this many seconds (0: every "
        "status); every API process handles every such event",
    )
    bridge_lease_s: float = Field(
        10.0,
        ge=1,
        le=300,
        description="Of several bridges one runs the timers (sessions, liveness, time-outs) "
        "while it holds a lease of this many seconds, renewed every third of it; when it dies "
        "another takes over after at most this long",
    )
    access_token_minutes: int = Field(15, ge=1, le=24 * 60, description="Access token lifetime")
    refresh_token_days: int = Field(30, ge=1, le=365, description="Refresh token lifetime")
    token_check_cache_s: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Seconds an API process keeps a passed access-token check (0: check the "
        "database on every request); changes reach every process over MQTT at once",
    )
    summary_cache_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="Seconds an API process serves the fleet summary (or a session's detail) "
        "it built last while no state, edit, alert, segment or session membership changed (0: "
        "build it for every read); only the figures statuses move (last seen, disk, fps, "
        "recorded time) can be that old",
    )
    email_token_hours: int = Field(24, ge=1, le=24 * 14, description="Invite/reset link lifetime")
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest accepted request body"
    )
    login_rate_limit: str = Field(
        "10/minute", description="Login attempts allowed per account and per address"
    )
    ratelimit_storage_uri: str = Field(
        DATABASE_STORAGE,
        description="Where the rate limits count: database (the service database, shared by "
        "every worker), redis://host:port (needs the redis package), or memory:// (this "
        "process only: each worker counts apart)",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of the reverse proxies in front of "
        "the API (e.g. 127.0.0.1, ::1 for nginx on this host): only from these is "
        "X-Forwarded-For believed for the client address (empty = from nobody)",
    )
    proxy_count: int = Field(
        1,
        ge=1,
        le=10,
        description="How many trusted proxies in a row append to X-Forwarded-For (1: nginx alone; "
        "2: a load balancer, then nginx)",
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins (https://lab.example.org) whose pages may call "
        "the API from a browser (CORS); * for any; empty: none",
    )
    metrics_dir: str = Field(
        "var/metrics",
        description="Directory shared by the API workers and the bridge for Prometheus "
        "multiprocess metric files (empty = per-process metrics only)",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",")):
            if origin and origin != "*" and not _ORIGIN_RE.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port] with no path, "
                    "e.g. https://lab.example.org"
                )
        return value

    def cors_origin_set(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @field_validator("login_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError:
            raise ValueError(
                "not a rate limit: use a count per period such as 10/minute or 100/hour"
            ) from None
        return value

    @field_validator("ratelimit_storage_uri")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if value != DATABASE_STORAGE and ("://" not in value or scheme not in SCHEMES):
            raise ValueError(
                f"use {DATABASE_STORAGE}, memory:// or a limits storage URI such as "
                "redis://host:6379"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for entry in (part.strip() for part in value.split(",")):
            if entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not an IP address or network (such as 10.0.0.0/8)"
                    ) from None
        return value

    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """`trusted_proxies` as networks (a lone address is a /32 or /128)."""
        return [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in self.trusted_proxies.split(",")
            if part.strip()
        ]

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper


class JabsSettings(_Section):
    """The compatibility layer for the original JABS UI and device client (off by default;
    docs/jabs-migration.md)."""

    enabled: bool = Field(
        False, description="Serve the JABS-compatible REST layer and heartbeat gateway"
    )
    url_prefix: str = Field(
        "/jabs", description="Where the layer is mounted (the nginx config maps the UI's paths)"
    )
    ui_url: str = Field(
        "",
        description="Origin the original UI is served from, for emailed /password-reset links "
        "(empty = [SERVICE] public_url); the URL a client sends is never used",
    )
    cors_origins: str = Field(
        "*", description="Comma-separated origins allowed by CORS on the layer (* = any)"
    )
    heartbeat_networks: str = Field(
        "",
        description="Comma-separated CIDR networks whose registered legacy devices may send "
        "heartbeats without a token (empty = a per-device token is always needed)",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated CIDR networks of reverse proxies whose X-Real-IP header "
        "gives a heartbeat's address (e.g. 127.0.0.1/32 behind the shipped nginx config)",
    )
    down_after_s: float = Field(
        60.0, gt=0, le=3600, description="A legacy device silent this long is DOWN (lost)"
    )
    stream_keepalive_s: float = Field(
        10.0, gt=0, le=600, description="STREAM is sent while a live view was asked this recently"
    )

    @field_validator("url_prefix")
    @classmethod
    def _prefix_is_path(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or value.startswith("/api"):
            raise ValueError("must start with /, not end with /, and not be under /api")
        return value

    @field_validator("heartbeat_networks", "trusted_proxies")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not a CIDR network ({exc})") from None
        return value

    def networks(
        self, value: str | None = None
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The networks of ``heartbeat_networks`` (or of ``value``)."""
        text = self.heartbeat_networks if value is None else value
        return [
            ipaddress.ip_network(item.strip(), strict=False)
            for item in text.split(",")
            if item.strip()
        ]
