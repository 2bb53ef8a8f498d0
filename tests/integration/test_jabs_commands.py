"""The seed's commands and files for a lab moving from JABS: `migrate_config` for an original
config file, `start_workers`, the `manage.py` shim, a pinned requirements.txt kept fresh, and
registering legacy devices."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from controlsvc.config.settings import load_settings
from controlsvc.domain.errors import ConfigError
from tests.integration.test_cli import db_env, entry, invoke, workdir  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]

ORIGINAL = """\
[MAIN]
flask_secret = {flask}
jwt_secret = {jwt}
down_device_threshold = 90
stream_keep_alive = 15

[EMAIL]
reply_to = mba-noreply@lab.example.org
smtp = smtp.lab.example.org:2525

[DATABASE]
dialect = postgresql
username = mba
password = s3cret-db
host = db.lab.example.org
port = 5433
database = jaxmba

[CELERY]
celery_broker_url = amqp://u:p@broker:5672/mba
"""


def original(flask: str = "a" * 64, jwt: str = "b" * 64) -> str:
    return ORIGINAL.format(flask=flask, jwt=jwt)


def test_an_original_config_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "jax-mba-service.config"
    path.write_text(original())
    with pytest.raises(ConfigError, match="migrate_config"):
        load_settings(path, profile="prod")


def test_migrate_config_converts_in_place(runner, workdir: Path) -> None:
    path = workdir / "jax-mba-service.config"
    path.write_text(original())
    result = invoke(runner, ["migrate_config"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    backup = workdir / "jax-mba-service.config.jabs"
    assert backup.read_text() == original()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    settings = load_settings(path, profile="prod")
    assert settings.database.dialect == "postgres"
    assert settings.database.username == "mba"
    assert settings.database.password.get_secret_value() == "s3cret-db"
    assert (settings.database.host, settings.database.port) == ("db.lab.example.org", 5433)
    assert settings.database.database == "jaxmba"
    assert settings.secrets.secret_key.get_secret_value() == "a" * 64
    assert settings.secrets.jwt_secret_key.get_secret_value() == "b" * 64
    assert (settings.mail.backend, settings.mail.host, settings.mail.port) == (
        "smtp",
        "smtp.lab.example.org",
        2525,
    )
    assert settings.mail.sender == "mba-noreply@lab.example.org"
    assert settings.jabs.enabled
    assert (settings.jabs.down_after_s, settings.jabs.stream_keepalive_s) == (90, 15)
    assert "no counterpart: [CELERY] CELERY_BROKER_URL" in result.output
    assert "[MAIN] JWT_SECRET -> [SECRETS] jwt_secret_key" in result.output
    # The secrets are not printed.
    assert "a" * 64 not in result.output
    # Run again on the converted file: not an original any more.
    again = invoke(runner, ["migrate_config"])
    assert again.exit_code == 2
    assert "not an original JABS config" in again.output


def test_migrate_config_generates_missing_secrets_and_refuses_bad_values(
    runner, workdir: Path
) -> None:
    source = workdir / "old.config"
    source.write_text(original(flask="", jwt=""))
    result = invoke(runner, ["--config", "new.config", "migrate_config", "old.config"])
    assert result.exit_code == 0, result.output
    assert "generated [SECRETS] jwt_secret_key" in result.output
    settings = load_settings(workdir / "new.config", profile="prod")
    assert len(settings.secrets.jwt_secret_key.get_secret_value()) == 64
    assert source.read_text() == original(flask="", jwt="")  # the source is left alone

    source.write_text(original().replace("dialect = postgresql", "dialect = mysql"))
    result = invoke(runner, ["--config", "other.config", "migrate_config", "old.config"])
    assert result.exit_code == 2
    assert "DIALECT 'mysql'" in result.output
    assert not (workdir / "other.config").exists()


def test_start_workers_is_the_bridge(runner) -> None:
    result = invoke(runner, ["start_workers", "--help"])
    assert result.exit_code == 0
    assert "Run only the MQTT bridge" in result.output


def test_manage_py_shim_runs_the_commands(tmp_path: Path) -> None:
    env = {**os.environ, "FLASK_CONFIG": "test", "JAXMBA_CONFIG": str(tmp_path / "x.config")}

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            check=False,
        )

    result = manage("init_config")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.config").exists()
    result = manage("--help")
    for command in ("run", "create_admin", "create_secrets", "init_config", "db", "shell"):
        assert f"  {command} " in result.stdout


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_requirements", ROOT / "scripts/gen_requirements.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_txt_is_generated_from_setup_cfg_and_fresh(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_requirements.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    gen = _generator()
    text = (ROOT / "requirements.txt").read_text()
    assert gen.problems(text, gen.wanted()) == []
    # What makes it stale: a new dependency, a tightened specifier, a removed one.
    cfg = (ROOT / "setup.cfg").read_text()
    stale = tmp_path / "setup.cfg"
    stale.write_text(cfg.replace("    click>=8.1\n", "    click>=8.1\n    tomli-w>=1.0\n"))
    assert gen.problems(text, gen.wanted(stale)) == ["tomli-w is missing"]
    stale.write_text(cfg.replace("flask>=3.1,<4", "flask>=99"))
    assert any("flask==" in p for p in gen.problems(text, gen.wanted(stale)))
    stale.write_text(cfg.replace("    rich>=14.0\n", ""))
    assert gen.problems(text, gen.wanted(stale)) == ["rich is no longer a dependency"]


def test_register_legacy_devices(runner, db_env, workdir: Path) -> None:
    result = invoke(runner, ["jabs_register_device", "Box-07", "--location", "room 2"], env=db_env)
    assert result.exit_code == 0, result.output
    assert "as enclosure box-07" in result.output
    assert "token (shown once): " in result.output
    assert "/jabs/device-token/" in result.output
    result = invoke(runner, ["jabs_register_device", "box-08", "--no-token"], env=db_env)
    assert "token" not in result.output.replace("--no-token", "")
    listed = invoke(runner, ["jabs_devices"], env=db_env).output
    assert "box-07\tbox-07\ttoken" in listed
    assert "box-08\tbox-08\tnetworks only" in listed
    result = invoke(runner, ["jabs_register_device", "has space"], env=db_env)
    assert result.exit_code == 1
    assert "not a host name" in result.output
    result = invoke(runner, ["jabs_unregister_device", "box-08"], env=db_env)
    assert result.exit_code == 0
    assert "box-08" not in invoke(runner, ["jabs_devices"], env=db_env).output
    result = invoke(runner, ["jabs_unregister_device", "box-08"], env=db_env)
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        (
            "heartbeat_networks",
            "10.0.0.0/33",
            "[JABS] heartbeat_networks: '10.0.0.0/33' is not a CIDR",
        ),
        ("trusted_proxies", "proxy.lab", "[JABS] trusted_proxies: 'proxy.lab' is not a CIDR"),
        ("url_prefix", "/api/jabs", "[JABS] url_prefix: must start with /"),
        ("down_after_s", "0", "[JABS] down_after_s"),
    ],
)
def test_bad_jabs_settings_name_section_and_key(
    tmp_path: Path, key: str, value: str, said: str
) -> None:
    path = tmp_path / "jax-mba-service.config"
    path.write_text(f"[JABS]\nenabled = true\n{key} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, profile="test")
    assert said in str(caught.value)
