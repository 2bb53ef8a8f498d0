"""The main commands as a user runs them: the installed console script (and `python -m
controlsvc`) in a fresh directory, with the real argon2 parameters."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from controlsvc.store.models.users import User
from tests.support.auth import PASSWORD

pytestmark = pytest.mark.slow  # a fresh interpreter per command

# A command that does not finish in this long is stuck.
COMMAND_TIMEOUT_S = 120


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "jaxmba-service"
    if script.exists():
        return [str(script)]
    found = shutil.which("jaxmba-service")
    return [found] if found else [sys.executable, "-m", "controlsvc"]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JAXMBA_") and k not in ("FLASK_CONFIG", "PYTHONPATH")
    }
    env.update(extra)
    return env


def run(cwd: Path, *args: str, stdin: str | None = None, module: bool = False, **env: str):
    argv = [sys.executable, "-m", "controlsvc"] if module else _console_script()
    return subprocess.run(
        [*argv, *args],
        cwd=cwd,
        env=_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def test_help_from_the_console_script_and_the_module(tmp_path):
    for module in (False, True):
        result = run(tmp_path, "--help", module=module)
        assert result.returncode == 0, result.stderr
        for name in ("init_config", "create_admin", "db", "run", "test_xml"):
            assert name in result.stdout
    # importing and asking for help writes nothing into the working directory
    assert list(tmp_path.iterdir()) == []


def test_fresh_directory_to_first_admin(tmp_path):
    init = run(tmp_path, "init_config")
    assert init.returncode == 0, init.stderr
    config = tmp_path / "jax-mba-service.config"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    again = run(tmp_path, "init_config")
    assert again.returncode == 1
    assert "--force" in again.stderr

    upgrade = run(tmp_path, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "var" / "jaxmba-dev.sqlite").exists()
    current = run(tmp_path, "db", "current")
    assert current.returncode == 0
    assert "(head)" in current.stdout

    weak = run(tmp_path, "create_admin", "--email", "boss@example.com", "--password", "password1")
    assert weak.returncode != 0
    assert "common" in weak.stderr
    assert "Traceback" not in weak.stderr

    created = run(
        tmp_path,
        "create_admin",
        "--email",
        "boss@example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created administrator boss@example.com" in created.stdout

    duplicate = run(
        tmp_path, "create-admin", "--email", "BOSS@example.com", "--password", PASSWORD, module=True
    )
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr

    # the admin can log in with what was set through the CLI
    from controlsvc.config.settings import load_settings
    from controlsvc.ops.app import create_app

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        app = create_app(load_settings(config))
        response = app.test_client().post(
            "/api/auth/login", json={"email": "boss@example.com", "password": PASSWORD}
        )
    finally:
        os.chdir(cwd)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["user"]["role"] == "admin"


def test_bad_config_value_exits_2_without_a_traceback(tmp_path):
    (tmp_path / "jax-mba-service.config").write_text("[SERVICE]\nport = lots\n")
    result = run(tmp_path, "db", "current")
    assert result.returncode == 2
    assert "[SERVICE] port" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    env_result = run(tmp_path, "db", "current", JAXMBA_SERVICE_PORT="5000", JAXMBA_MQTT_PORT="-1")
    assert env_result.returncode == 2
    assert "[MQTT] port" in env_result.stderr
    assert "$JAXMBA_MQTT_PORT" in env_result.stderr


def test_prod_with_empty_secrets_is_refused(tmp_path):
    assert run(tmp_path, "init_config", "--profile", "prod").returncode == 0
    config = tmp_path / "jax-mba-service.config"
    text = config.read_text()
    lines = [
        ("secret_key =" if line.startswith("secret_key") else line) for line in text.splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")
    result = run(tmp_path, "db", "current", FLASK_CONFIG="prod")
    assert result.returncode == 2
    assert "[SECRETS] secret_key" in result.stderr
    assert "Traceback" not in result.stderr


def test_create_admin_against_the_test_database(tmp_path, db_url, database):
    url = db_url.render_as_string(hide_password=False)
    result = run(
        tmp_path,
        "create_admin",
        "--email",
        "sub@example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
        FLASK_CONFIG="test",
        JAXMBA_DATABASE_URL=url,
    )
    assert result.returncode == 0, result.stderr
    with database.session() as session:
        user = session.scalars(select(User)).one()
    assert (user.email, user.role) == ("sub@example.com", "admin")
    # the real (production) argon2 parameters, not the test suite's cheap ones
    assert "m=65536" in user.password_hash
