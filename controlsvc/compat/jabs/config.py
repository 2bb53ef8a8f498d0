"""Converting an original JABS ``jax-mba-service.config`` into this service's config. No I/O.

Its ``[DATABASE]`` is kept as it is; ``[MAIN]`` and ``[EMAIL]`` are mapped
(``MAPPING``); the rest has no counterpart here and is reported (``Conversion.unmapped``), not
silently dropped. The JABS layer is switched on, since a lab converting its config has the
original UI and devices to serve.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field

from controlsvc.config.configfile import render_template, set_values
from controlsvc.config.settings import Profile
from controlsvc.domain.errors import ConfigError

__all__ = ["MAPPING", "ORIGINAL_SECTIONS", "Conversion", "convert", "is_original"]

# (original section, key) -> (our section, key)
MAPPING: dict[tuple[str, str], tuple[str, str]] = {
    ("main", "flask_secret"): ("SECRETS", "secret_key"),
    ("main", "jwt_secret"): ("SECRETS", "jwt_secret_key"),
    ("main", "down_device_threshold"): ("JABS", "down_after_s"),
    ("main", "stream_keep_alive"): ("JABS", "stream_keepalive_s"),
    ("email", "smtp"): ("MAIL", "host"),
    ("email", "reply_to"): ("MAIL", "sender"),
    ("database", "dialect"): ("DATABASE", "dialect"),
    ("database", "username"): ("DATABASE", "username"),
    ("database", "password"): ("DATABASE", "password"),
    ("database", "host"): ("DATABASE", "host"),
    ("database", "port"): ("DATABASE", "port"),
    ("database", "database"): ("DATABASE", "database"),
}
# Sections only the original has: a file with one of them is an original config.
ORIGINAL_SECTIONS = frozenset({"main", "email", "celery", "ldap", "ldap3"})
_DIALECTS = {"postgres": "postgres", "postgresql": "postgres", "sqlite": "sqlite"}
_SECRET_KEYS = {"flask_secret", "jwt_secret", "password"}


@dataclass
class Conversion:
    text: str  # the new config file
    mapped: list[str] = field(default_factory=list)  # "[MAIN] FLASK_SECRET -> [SECRETS] ..."
    unmapped: list[str] = field(default_factory=list)  # "[CELERY] CELERY_BROKER_URL"


def _parse(text: str, source: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, allow_no_value=True)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: not a valid INI file: {exc.message}") from None
    return parser


def is_original(text: str, source: str = "<config>") -> bool:
    parser = _parse(text, source)
    return any(s.lower() in ORIGINAL_SECTIONS for s in parser.sections())


def _value(section: str, key: str, raw: str, source: str) -> str:
    value = raw.strip()
    if (section, key) == ("database", "dialect"):
        known = _DIALECTS.get(value.lower())
        if known is None:
            raise ConfigError(f"{source}: [DATABASE] DIALECT {value!r}: use postgres or sqlite")
        return known
    if (section, key) in {("main", "down_device_threshold"), ("main", "stream_keep_alive")}:
        try:
            number = float(value)
        except ValueError:
            number = 0.0
        if not number > 0:
            raise ConfigError(
                f"{source}: [{section.upper()}] {key.upper()} {value!r}: not a positive number"
            )
    return value


def convert(text: str, *, source: str = "<config>") -> Conversion:
    """The original config ``text`` as ours (production profile: PostgreSQL, SMTP)."""
    parser = _parse(text, source)
    out = Conversion(text=render_template(Profile.PROD))
    values: dict[str, dict[str, str]] = {"JABS": {"enabled": "true"}}
    for section in parser.sections():
        for key, raw in parser.items(section):
            name = (section.lower(), key.lower())
            target = MAPPING.get(name)
            shown = f"[{section.upper()}] {key.upper()}"
            if target is None:
                out.unmapped.append(shown)
                continue
            if raw is None or not raw.strip():
                continue  # empty in the original: our default stands
            value = _value(*name, raw, source)
            if name == ("email", "smtp"):
                host, _, port = value.partition(":")
                value = host
                if port:
                    values.setdefault("MAIL", {})["port"] = port
                values.setdefault("MAIL", {})["backend"] = "smtp"
            values.setdefault(target[0], {})[target[1]] = value
            out.mapped.append(f"{shown} -> [{target[0]}] {target[1]}")
    for section, keys in values.items():
        out.text = set_values(out.text, section, keys)
    return out
