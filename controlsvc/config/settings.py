"""Service configuration: the INI file `jax-mba-service.config`, environment overrides, profiles.

Precedence (highest first): `JAXMBA_<SECTION>_<KEY>` environment variables, the INI file, the
defaults of the profile selected by `FLASK_CONFIG` (dev | prod | test), the built-in defaults.
Loading never writes anything; only the CLI commands that say so write files (mode 0600).
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from controlsvc.config.sections import (
    DatabaseSettings,
    JabsSettings,
    MailSettings,
    MqttSettings,
    SecretsSettings,
    ServiceSettings,
)
from controlsvc.domain.errors import ConfigError

DEFAULT_CONFIG_FILENAME = "jax-mba-service.config"
CONFIG_ENV_VAR = "JAXMBA_CONFIG"
PROFILE_ENV_VAR = "FLASK_CONFIG"
ENV_PREFIX = "JAXMBA_"
SECTIONS = ("database", "secrets", "mqtt", "mail", "service", "jabs")


class Profile(StrEnum):
    DEV = "dev"
    PROD = "prod"
    TEST = "test"


class IniFileSource(PydanticBaseSettingsSource):
    """Reads the INI file; section names are case-insensitive, keys lower-case."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Mapping[str, str]]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, True

    def __call__(self) -> dict[str, Any]:
        return {k: dict(v) for k, v in self._data.items()}


class Settings(BaseSettings):
    """All of the service's configuration, one model per INI section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        case_sensitive=False,
        extra="forbid",
    )

    profile: Profile = Field(Profile.DEV, description="dev | prod | test (from FLASK_CONFIG)")
    config_path: str = Field("", description="The file these settings came from, if any")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    jabs: JabsSettings = Field(default_factory=JabsSettings)

    @model_validator(mode="after")
    def _prod_needs_real_settings(self) -> Settings:
        if self.profile is not Profile.PROD:
            return self
        problems = []
        if self.database.sqlalchemy_url().get_backend_name() == "sqlite":
            where = "[DATABASE] url" if self.database.url else "[DATABASE] dialect = sqlite"
            problems.append(
                f"prod refuses SQLite ({where}): production needs PostgreSQL (dialect = "
                "postgres with host, database, username and password); SQLite is for the dev "
                "and test profiles"
            )
        empty = self.secrets.empty()
        if empty:
            problems.append(
                "prod refuses to start with empty secrets: "
                + ", ".join(f"[SECRETS] {name}" for name in empty)
                + " (run `jaxmba-service create_secrets`)"
            )
        if problems:
            raise ValueError("; and ".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the file and profile layers (merged by load_settings); env wins.
        return (env_settings, init_settings)


def profile_defaults(profile: Profile) -> dict[str, dict[str, Any]]:
    """What each profile changes from the built-in defaults."""
    if profile is Profile.PROD:
        return {
            "database": {"dialect": "postgres", "database": "jaxmba"},
            "mail": {"backend": "smtp"},
            "service": {"host": "127.0.0.1", "workers": 4},
        }
    if profile is Profile.TEST:
        return {
            "database": {"dialect": "sqlite", "database": "var/jaxmba-test.sqlite"},
            "mqtt": {"embedded": True, "port": 0},
        }
    return {
        "database": {"dialect": "sqlite", "database": "var/jaxmba-dev.sqlite"},
        "mqtt": {"embedded": True, "port": 0},
    }


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILENAME)


def read_ini(path: Path) -> dict[str, dict[str, str]]:
    """Parse the INI file into {section: {key: value}} with lower-case names."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a valid INI file: {exc.message}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    data: dict[str, dict[str, str]] = {}
    for section in parser.sections():
        name = section.lower()
        if name in ("main", "email") and "database" in (s.lower() for s in parser.sections()):
            raise ConfigError(
                f"{path}: [{section}] is from an original JABS config: convert the file with "
                "`jaxmba-service migrate_config` (docs/jabs-migration.md)"
            )
        if name not in SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}] (expected one of "
                + ", ".join(f"[{s.upper()}]" for s in SECTIONS)
                + ")"
            )
        data[name] = {key.lower(): value for key, value in parser.items(section)}
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _profile_from_env(environ: Mapping[str, str]) -> Profile:
    raw = environ.get(PROFILE_ENV_VAR, "").strip().lower() or Profile.DEV.value
    try:
        return Profile(raw)
    except ValueError:
        raise ConfigError(
            f"{PROFILE_ENV_VAR}={raw!r} is not a configuration: use dev, prod or test"
        ) from None


def load_settings(
    path: Path | str | None = None,
    *,
    profile: Profile | str | None = None,
    required: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build the settings from profile defaults, the INI file (if any) and the environment.

    `path=None` uses `JAXMBA_CONFIG` or `./jax-mba-service.config`; a missing file is fine
    unless `required` (or the path was given explicitly).
    """
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV_VAR))
    cfg_path = Path(path) if path is not None else default_config_path()
    chosen = Profile(profile) if profile is not None else _profile_from_env(os.environ)
    layers: dict[str, Any] = profile_defaults(chosen)
    if cfg_path.exists():
        layers = _merge(layers, read_ini(cfg_path))
    elif required or explicit:
        raise ConfigError(
            f"{cfg_path}: no such config file (create one with `jaxmba-service init_config`)"
        )
    if overrides:
        layers = _merge(layers, overrides)
    layers["profile"] = chosen
    layers["config_path"] = str(cfg_path) if cfg_path.exists() else ""
    try:
        return Settings(**layers)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, cfg_path)) from None


def describe_validation_error(exc: ValidationError, path: Path) -> str:
    """One line per problem: where (section, key, and which source), the value, the reason."""
    lines = [f"invalid configuration ({path}):"]
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if loc and loc[0] in SECTIONS:
            section = loc[0].upper()
            key = ".".join(loc[1:]) or "?"
            env_name = f"{ENV_PREFIX}{section}_{key.upper()}"
            where = f"[{section}] {key}"
            if env_name in os.environ:
                where += f" (from ${env_name})"
            value = err.get("input")
            shown = (
                ""
                if "secret" in key or "password" in key or isinstance(value, dict)
                else (f" (got {value!r})" if value is not None else "")
            )
            lines.append(f"  {where}: {message}{shown}")
        else:
            lines.append(f"  {'.'.join(loc) or 'settings'}: {message}")
    return "\n".join(lines)
