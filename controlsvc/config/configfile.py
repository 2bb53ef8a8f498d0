"""Writing the service config file: a commented template, and in-place edits of single keys.

Config files hold secrets, so everything written here is created with mode 0600 and replaced
atomically (a crash never leaves half a file).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from controlsvc.config.sections import SECRET_BYTES
from controlsvc.config.settings import Profile
from controlsvc.files import atomic_write

CONFIG_FILE_MODE = 0o600

TEMPLATE = """\
# JAX MBA control service configuration ({profile} profile).
# Every key can be overridden by an environment variable JAXMBA_<SECTION>_<KEY>,
# e.g. JAXMBA_DATABASE_HOST. This file holds secrets: keep it mode 0600.

[DATABASE]
# postgres (production) or sqlite (development)
dialect = {dialect}
username = {db_username}
password =
host = 127.0.0.1
port = 5432
# PostgreSQL database name, or the SQLite file path
database = {database}

[SECRETS]
# Filled with random hex by `jaxmba-service create_secrets` (--rotate replaces them).
secret_key =
jwt_secret_key =
# Bearer token Prometheus may use for GET /metrics (empty: an admin/operator login only).
metrics_token =

[MQTT]
host = 127.0.0.1
port = {mqtt_port}
username = jaxmba_service
password =
tls = false
ca_file =
topic_prefix = jaxmba/v1
keepalive_s = 5
# `run` starts a local Mosquitto itself (development); production runs its own broker.
embedded = {embedded}
embedded_dir = var/mosquitto

[MAIL]
# smtp, or console (mails are written to the log)
backend = {mail_backend}
host = localhost
port = 25
username =
password =
# none, starttls or ssl
security = none
sender = jaxmba@localhost

[SERVICE]
host = 127.0.0.1
port = 5000
public_url = http://localhost:5000
workers = 2
log_level = INFO
status_interval_s = 5
lost_after_intervals = 3
command_timeout_s = 30
status_history_days = 30
# 0: every status in the history; else one per enclosure per this many seconds, plus every
# status that changed what a user sees (at 5 s statuses, 60 writes a twelfth of the rows).
status_history_every_s = 0
# An enclosure's status reaches the live feed (UI, streams) at once when what a user sees
# changes, else at most once per this many seconds (0: every status). Every API process handles
# every such event: a large fleet raises it (docs/scale.md).
status_event_every_s = 10
# With several bridges, one runs the timers while it holds a lease of this many seconds;
# another takes over at most this long after it dies.
bridge_lease_s = 10
access_token_minutes = 15
refresh_token_days = 30
# Seconds an API process keeps a passed access-token check (0: read the database every request);
# a logout, password change or disabling reaches every process over MQTT at once regardless.
token_check_cache_s = 5
# Seconds an API process serves the fleet summary or a session's detail it built last (0: build
# it for every read); a state change, edit, alert or session change is shown at once regardless.
summary_cache_s = 1
email_token_hours = 24
# Attempts per account and per client address (login, password reset, password change).
login_rate_limit = 10/minute
# Where those attempts are counted: database (shared by every worker), redis://host:6379,
# or memory:// (this process only).
ratelimit_storage_uri = database
# Reverse proxies whose X-Forwarded-For names the client (nginx on this host: 127.0.0.1, ::1);
# empty: nobody's, the peer is the client. proxy_count: proxies in a row appending to it.
trusted_proxies = {trusted_proxies}
proxy_count = 1
# Shared directory for multiprocess Prometheus metrics (API workers and the bridge).
metrics_dir = var/metrics

[JABS]
# The layer for the original JABS UI and device client (docs/jabs-migration.md).
enabled = false
url_prefix = /jabs
# Origin of the original UI, for emailed password links (empty: public_url).
ui_url =
cors_origins = *
# CIDR networks whose registered legacy devices need no token (empty: token always).
heartbeat_networks =
# Reverse proxies whose X-Real-IP names the device (127.0.0.1/32 behind the nginx config).
trusted_proxies =
down_after_s = 60
stream_keepalive_s = 10
"""


def render_template(profile: Profile) -> str:
    prod = profile is Profile.PROD
    return TEMPLATE.format(
        profile=profile.value,
        dialect="postgres" if prod else "sqlite",
        db_username="jaxmba" if prod else "",
        database="jaxmba" if prod else f"var/jaxmba-{profile.value}.sqlite",
        mqtt_port=1883 if prod else 0,
        embedded="false" if prod else "true",
        mail_backend="smtp" if prod else "console",
        # deploy/nginx proxies from this host; dev and test serve browsers directly.
        trusted_proxies="127.0.0.1, ::1" if prod else "",
    )


def write_private(path: Path, text: str) -> None:
    """Atomically write `text` to `path`, readable by its owner only (whatever it was before)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=CONFIG_FILE_MODE, keep_existing=False)


_SECTION_RE = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_KEY_RE = re.compile(r"^(?P<key>[A-Za-z0-9_.-]+)\s*[=:]\s*(?P<value>.*)$")


def read_value(text: str, section: str, key: str) -> str | None:
    current = None
    for line in text.splitlines():
        match = _SECTION_RE.match(line)
        if match:
            current = match["name"].strip().lower()
            continue
        kv = _KEY_RE.match(line.strip())
        if kv and current == section.lower() and kv["key"].lower() == key.lower():
            return kv["value"].strip()
    return None


def set_values(text: str, section: str, values: Mapping[str, str]) -> str:
    """Set keys of one section, keeping comments and order; missing keys/sections are added."""
    lines = text.splitlines()
    pending = {k.lower(): v for k, v in values.items()}
    out: list[str] = []
    current: str | None = None
    section_seen = False

    def flush_pending() -> None:
        for key, value in list(pending.items()):
            out.append(f"{key} = {value}")
            del pending[key]

    for line in lines:
        match = _SECTION_RE.match(line)
        if match:
            if current == section.lower():
                flush_pending()
            current = match["name"].strip().lower()
            section_seen = section_seen or current == section.lower()
            out.append(line)
            continue
        kv = _KEY_RE.match(line.strip())
        if kv and current == section.lower() and kv["key"].lower() in pending:
            key = kv["key"].lower()
            out.append(f"{kv['key']} = {pending.pop(key)}")
            continue
        out.append(line)
    if current == section.lower():
        flush_pending()
    if pending:
        if not section_seen:
            out.extend(["", f"[{section.upper()}]"])
        flush_pending()
    return "\n".join(out) + "\n"


def new_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def fill_secrets(path: Path, names: list[str], *, rotate: bool) -> list[str]:
    """Give every empty secret (every secret with `rotate`) a new random value; return changed."""
    text = path.read_text(encoding="utf-8")
    changed = {}
    for name in names:
        current = read_value(text, "SECRETS", name)
        if rotate or not current:
            changed[name] = new_secret()
    if changed:
        write_private(path, set_values(text, "SECRETS", changed))
    else:
        os.chmod(path, CONFIG_FILE_MODE)
    return sorted(changed)
