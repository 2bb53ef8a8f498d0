"""Every `jaxmba-service` command through click's CliRunner (the full `main`, with its error
handling, so exit codes and messages are what a user sees)."""

from __future__ import annotations

import os
import stat
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from sqlalchemy import select

from controlsvc.config.configfile import read_value
from controlsvc.config.settings import load_settings
from controlsvc.ops import manage
from controlsvc.store import migrate
from controlsvc.store.db import Database
from controlsvc.store.models.users import User
from tests.support.auth import PASSWORD
from tests.support.postgres import create_database, drop_database


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def entry(argv: tuple[str, ...]) -> None:
    """`jaxmba-service` as the console script runs it (manage.main)."""
    manage.main(list(argv))


def invoke(runner, args, **kwargs):
    result = runner.invoke(entry, args, catch_exceptions=False, **kwargs)
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def db_env(db_url, database) -> dict[str, str]:
    """The environment that points the CLI at the (migrated) test database of this backend."""
    return {
        "FLASK_CONFIG": "test",
        "JAXMBA_DATABASE_URL": db_url.render_as_string(hide_password=False),
    }


def _users(database) -> list[User]:
    with database.session() as session:
        return list(session.scalars(select(User)))


# --- help, aliases ---------------------------------------------------------------------------


def test_help_lists_every_command(runner):
    result = invoke(runner, ["--help"])
    assert result.exit_code == 0
    for name in (
        "init_config",
        "create_secrets",
        "create_admin",
        "db",
        "run",
        "runserver",
        "gunicorn_run",
        "shell",
        "test",
        "test_xml",
        "bridge",
    ):
        assert name in result.output
    version = invoke(runner, ["--version"])
    assert version.exit_code == 0
    assert "jaxmba-service" in version.output


def test_unknown_command_is_a_usage_error(runner):
    result = invoke(runner, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.output


# --- init_config, create_secrets ---------------------------------------------------------


def test_init_config_writes_a_private_file_with_secrets(runner, workdir):
    result = invoke(runner, ["init_config"])
    assert result.exit_code == 0, result.output
    path = workdir / "jax-mba-service.config"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    for key in ("secret_key", "jwt_secret_key"):
        value = read_value(text, "SECRETS", key)
        assert value
        assert len(value) == 64
    settings = load_settings(path)
    assert settings.database.dialect == "sqlite"
    assert settings.mail.backend == "console"


def test_a_tiny_status_interval_is_refused_naming_the_key(runner, workdir):
    """1e-9 s would make every enclosure lost between two of its statuses."""
    from controlsvc.domain.errors import ConfigError

    assert invoke(runner, ["init_config"]).exit_code == 0
    with pytest.raises(ConfigError, match=r"\[SERVICE\] status_interval_s.*greater than or"):
        load_settings(
            workdir / "jax-mba-service.config", overrides={"service": {"status_interval_s": 1e-9}}
        )


def test_init_config_refuses_to_overwrite_without_force(runner, workdir):
    assert invoke(runner, ["init_config"]).exit_code == 0
    path = workdir / "jax-mba-service.config"
    path.write_text(path.read_text() + "\n# my edits\n")
    refused = invoke(runner, ["init_config"])
    assert refused.exit_code == 1
    assert "exists" in refused.output
    assert "--force" in refused.output
    assert "# my edits" in path.read_text()
    forced = invoke(runner, ["init-config", "--force", "--profile", "prod"])  # hyphen alias
    assert forced.exit_code == 0, forced.output
    assert "# my edits" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings(path, profile="prod").database.dialect == "postgres"


def test_init_config_honours_config_option_and_env(runner, workdir):
    target = workdir / "etc" / "service.ini"
    assert invoke(runner, ["--config", str(target), "init_config"]).exit_code == 0
    assert target.exists()
    other = workdir / "other.ini"
    assert invoke(runner, ["init_config"], env={"JAXMBA_CONFIG": str(other)}).exit_code == 0
    assert other.exists()


def test_create_secrets_fills_then_keeps_then_rotates(runner, workdir):
    assert invoke(runner, ["init_config"]).exit_code == 0
    path = workdir / "jax-mba-service.config"
    text = path.read_text()
    original = read_value(text, "SECRETS", "jwt_secret_key")
    # empty one secret: create_secrets fills only that one
    path.write_text(text.replace(f"jwt_secret_key = {original}", "jwt_secret_key ="))
    os.chmod(path, 0o644)
    filled = invoke(runner, ["create_secrets"])
    assert filled.exit_code == 0
    assert "jwt_secret_key" in filled.output
    assert "secret_key," not in filled.output
    text = path.read_text()
    kept_secret = read_value(text, "SECRETS", "secret_key")
    new_jwt = read_value(text, "SECRETS", "jwt_secret_key")
    assert new_jwt
    assert new_jwt != original
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    unchanged = invoke(runner, ["create_secrets"])
    assert unchanged.exit_code == 0
    assert "already set" in unchanged.output
    rotated = invoke(runner, ["create-secrets", "--rotate"])
    assert rotated.exit_code == 0
    text = path.read_text()
    assert read_value(text, "SECRETS", "secret_key") != kept_secret
    assert read_value(text, "SECRETS", "jwt_secret_key") != new_jwt


def test_create_secrets_without_a_file_fails(runner, workdir):
    result = invoke(runner, ["create_secrets"])
    assert result.exit_code == 1
    assert "no such config file" in result.output


# --- create_admin ----------------------------------------------------------------------------


def test_create_admin_with_flags(runner, db_env, database):
    result = invoke(
        runner,
        ["create_admin", "--email", "Boss@Example.com", "--password", PASSWORD],
        env=db_env,
    )
    assert result.exit_code == 0, result.output
    assert "created administrator boss@example.com" in result.output
    [user] = _users(database)
    assert (user.email, user.role) == ("boss@example.com", "admin")
    assert user.password_hash.startswith("$argon2id$")


def test_create_admin_with_password_stdin(runner, db_env, database):
    result = invoke(
        runner,
        ["create-admin", "--email", "stdin@example.com", "--password-stdin"],
        input=PASSWORD + "\n",
        env=db_env,
    )
    assert result.exit_code == 0, result.output
    assert [u.email for u in _users(database)] == ["stdin@example.com"]


def test_create_admin_prompts(runner, db_env, database):
    result = invoke(
        runner,
        ["create_admin"],
        input=f"prompted@example.com\n{PASSWORD}\n{PASSWORD}\n",
        env=db_env,
    )
    assert result.exit_code == 0, result.output
    assert "Email" in result.output
    assert "Password" in result.output
    assert PASSWORD not in result.output  # hidden input
    assert [u.email for u in _users(database)] == ["prompted@example.com"]


def test_create_admin_prompt_repeats_until_passwords_match(runner, db_env, database):
    result = invoke(
        runner,
        ["create_admin", "--email", "typo@example.com"],
        input=f"{PASSWORD}\nsomething-else-1\n{PASSWORD}\n{PASSWORD}\n",
        env=db_env,
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output


@pytest.mark.parametrize(
    ("password", "reason"),
    [("password1", "most common passwords"), ("short", "at least 8 characters")],
)
def test_create_admin_refuses_a_weak_password(runner, db_env, database, password, reason):
    result = invoke(
        runner, ["create_admin", "--email", "weak@example.com", "--password", password], env=db_env
    )
    assert result.exit_code != 0
    assert "error:" in result.stderr
    assert reason in result.stderr
    assert "password" in result.stderr
    assert _users(database) == []


def test_create_admin_refuses_a_duplicate_and_a_bad_email(runner, db_env, database):
    args = ["create_admin", "--password", PASSWORD, "--email"]
    assert invoke(runner, [*args, "dup@example.com"], env=db_env).exit_code == 0
    duplicate = invoke(runner, [*args, "DUP@example.com"], env=db_env)
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.stderr
    bad = invoke(runner, [*args, "not-an-email"], env=db_env)
    assert bad.exit_code == 1
    assert "email" in bad.stderr
    assert len(_users(database)) == 1


def test_create_admin_refuses_both_password_options(runner, db_env):
    result = invoke(
        runner,
        ["create_admin", "--email", "a@example.com", "--password", "x", "--password-stdin"],
        env=db_env,
    )
    assert result.exit_code == 1
    assert "either" in result.stderr


def test_create_admin_needs_a_migrated_database(runner, workdir):
    env = {"JAXMBA_DATABASE_URL": f"sqlite+pysqlite:///{workdir / 'empty.sqlite'}"}
    result = invoke(
        runner, ["create_admin", "--email", "a@example.com", "--password", PASSWORD], env=env
    )
    assert result.exit_code == 1
    assert "db upgrade" in result.stderr


# --- db ------------------------------------------------------------------------------------


def test_db_upgrade_current_history_downgrade(runner, workdir):
    url = f"sqlite+pysqlite:///{workdir / 'fresh.sqlite'}"
    env = {"JAXMBA_DATABASE_URL": url}
    cfg = migrate.alembic_config(url)
    head = migrate.head_revision(cfg)
    upgraded = invoke(runner, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert "database at head" in upgraded.output
    current = invoke(runner, ["db", "current"], env=env)
    assert current.exit_code == 0
    assert head in current.output
    history = invoke(runner, ["db", "history"], env=env)
    assert history.exit_code == 0
    assert "0001" in history.output
    assert head in history.output
    down = invoke(runner, ["db", "downgrade", "base"], env=env)
    assert down.exit_code == 0, down.output
    db = Database(url)
    try:
        assert migrate.current_revision(db.engine) is None
        assert invoke(runner, ["db", "upgrade", "0001"], env=env).exit_code == 0
        assert migrate.current_revision(db.engine) == "0001"
    finally:
        db.dispose()


def test_db_commands_on_the_backend(runner, db_env):
    current = invoke(runner, ["db", "current"], env=db_env)
    assert current.exit_code == 0, current.output
    assert "(head)" in current.output


def test_db_revision_writes_a_new_migration(runner, workdir, tmp_path, monkeypatch):
    import shutil

    migrations = tmp_path / "migrations"
    shutil.copytree(
        migrate.migrations_dir(), migrations, ignore=shutil.ignore_patterns("__pycache__")
    )
    url = f"sqlite+pysqlite:///{workdir / 'rev.sqlite'}"
    env = {"JAXMBA_DATABASE_URL": url, "JAXMBA_MIGRATIONS_DIR": str(migrations)}
    assert invoke(runner, ["db", "upgrade"], env=env).exit_code == 0
    monkeypatch.setenv("JAXMBA_MIGRATIONS_DIR", str(migrations))
    result = invoke(runner, ["db", "revision", "-m", "add a thing", "--empty"], env=env)
    assert result.exit_code == 0, result.output
    created = [p for p in (migrations / "versions").glob("*add_a_thing.py")]
    assert len(created) == 1
    assert "def downgrade" in created[0].read_text()


# --- configuration errors --------------------------------------------------------------------


def _write_config(workdir, extra: str) -> Path:
    path = workdir / "jax-mba-service.config"
    path.write_text(f"[DATABASE]\ndialect = sqlite\ndatabase = {workdir / 'x.sqlite'}\n{extra}")
    return path


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("port = not-a-number\n", "[DATABASE] port"),
        ("[MQTT]\nport = 70000\n", "[MQTT] port"),
        ("[MQTT]\nclient_id = jaxmba-service\n", "[MQTT] client_id"),
        ("[SERVICE]\nlog_level = LOUD\n", "[SERVICE] log_level"),
        ("[MAIL]\nbackend = pigeon\n", "[MAIL] backend"),
        ("flavour = vanilla\n", "[DATABASE] flavour"),
        ("[NOPE]\nx = 1\n", "[NOPE]"),
        ("this is not ini\n", "not a valid INI file"),
    ],
)
def test_bad_config_exits_2_naming_section_and_key(runner, workdir, content, where):
    _write_config(workdir, content)
    result = invoke(runner, ["db", "current"])
    assert result.exit_code == 2, result.output
    assert where in result.stderr
    assert result.stderr.startswith("error:")


def test_bad_env_override_names_the_variable(runner, workdir):
    _write_config(workdir, "")
    result = invoke(runner, ["db", "current"], env={"JAXMBA_DATABASE_PORT": "many"})
    assert result.exit_code == 2
    assert "[DATABASE] port" in result.stderr
    assert "$JAXMBA_DATABASE_PORT" in result.stderr


def test_missing_explicit_config_file_exits_2(runner, workdir):
    result = invoke(runner, ["--config", str(workdir / "nope.ini"), "db", "current"])
    assert result.exit_code == 2
    assert "no such config file" in result.stderr


def test_prod_refuses_empty_secrets(runner, workdir):
    _write_config(workdir, "")
    result = invoke(runner, ["db", "current"], env={"FLASK_CONFIG": "prod"})
    assert result.exit_code == 2
    assert "[SECRETS] secret_key" in result.stderr
    assert "create_secrets" in result.stderr


def test_unknown_flask_config_exits_2(runner, workdir):
    result = invoke(runner, ["db", "current"], env={"FLASK_CONFIG": "staging"})
    assert result.exit_code == 2
    assert "FLASK_CONFIG" in result.stderr


def test_env_overrides_file_values(workdir, monkeypatch):
    path = _write_config(workdir, "port = 5432\nhost = db.example.org\n[SERVICE]\nport = 5000\n")
    monkeypatch.setenv("JAXMBA_DATABASE_PORT", "6543")
    monkeypatch.setenv("JAXMBA_SERVICE_PUBLIC_URL", "https://mba.example.org")
    monkeypatch.setenv("JAXMBA_MAIL_BACKEND", "smtp")
    settings = load_settings(path)
    assert settings.database.port == 6543
    assert settings.database.host == "db.example.org"  # not overridden
    assert settings.service.public_url == "https://mba.example.org"
    assert settings.service.port == 5000
    assert settings.mail.backend == "smtp"


def test_env_database_url_wins_for_the_cli(runner, workdir, db_env, database):
    _write_config(workdir, "")  # points at a SQLite file that has no tables
    result = invoke(
        runner, ["create_admin", "--email", "env@example.com", "--password", PASSWORD], env=db_env
    )
    assert result.exit_code == 0, result.output
    assert [u.email for u in _users(database)] == ["env@example.com"]


# --- serving commands (the servers themselves are replaced; their arguments are checked) ------


@pytest.fixture
def fake_runner(monkeypatch):
    calls: list[tuple[str, dict]] = []
    module = types.ModuleType("controlsvc.ops.runner")
    module.run_service = lambda settings, **kw: calls.append(("run", {"settings": settings, **kw}))
    module.serve_gunicorn = lambda settings, **kw: calls.append(
        ("gunicorn", {"settings": settings, **kw})
    )
    module.run_bridge = lambda settings: calls.append(("bridge", {"settings": settings}))
    monkeypatch.setitem(sys.modules, "controlsvc.ops.runner", module)
    monkeypatch.setattr(manage, "configure_logging", lambda *args, **kwargs: None)
    return calls


def test_run_migrates_in_dev_and_passes_host_and_port(runner, workdir, fake_runner):
    url = f"sqlite+pysqlite:///{workdir / 'run.sqlite'}"
    result = invoke(
        runner,
        ["run", "--host", "0.0.0.0", "--port", "8123", "--workers", "3", "--no-bridge"],
        env={"JAXMBA_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    [(kind, call)] = fake_runner
    assert kind == "run"
    assert (call["host"], call["port"], call["workers"], call["with_bridge"]) == (
        "0.0.0.0",
        8123,
        3,
        False,
    )
    db = Database(url)
    try:
        assert migrate.is_up_to_date(migrate.alembic_config(url), db.engine)
    finally:
        db.dispose()


def test_run_defaults_come_from_the_config(runner, workdir, fake_runner):
    _write_config(workdir, "[SERVICE]\nhost = 127.0.0.2\nport = 5999\nworkers = 2\n")
    result = invoke(runner, ["run"])
    assert result.exit_code == 0, result.output
    [(_kind, call)] = fake_runner
    assert (call["host"], call["port"], call["workers"], call["with_bridge"]) == (
        "127.0.0.2",
        5999,
        2,
        True,
    )


@pytest.fixture
def empty_postgres(pg_server) -> Iterator[str]:
    """An empty PostgreSQL database of its own (prod refuses SQLite)."""
    url = create_database(pg_server, prefix="jaxmba_cli_prod")
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        drop_database(url)


def test_run_in_prod_does_not_migrate_by_itself(runner, workdir, fake_runner, empty_postgres):
    env = {
        "FLASK_CONFIG": "prod",
        "JAXMBA_DATABASE_URL": empty_postgres,
        "JAXMBA_SECRETS_SECRET_KEY": "a" * 64,
        "JAXMBA_SECRETS_JWT_SECRET_KEY": "b" * 64,
    }
    refused = invoke(runner, ["run"], env=env)
    assert refused.exit_code == 1
    assert "db upgrade" in refused.stderr
    assert fake_runner == []
    assert invoke(runner, ["run", "--migrate"], env=env).exit_code == 0
    assert [kind for kind, _ in fake_runner] == ["run"]


@pytest.mark.parametrize(
    "database",
    [
        {"JAXMBA_DATABASE_DIALECT": "sqlite"},
        {"JAXMBA_DATABASE_URL": "sqlite+pysqlite:///prod.sqlite"},
    ],
    ids=["dialect", "url"],
)
def test_prod_refuses_sqlite(runner, workdir, fake_runner, database):
    env = {
        "FLASK_CONFIG": "prod",
        "JAXMBA_SECRETS_SECRET_KEY": "a" * 64,
        "JAXMBA_SECRETS_JWT_SECRET_KEY": "b" * 64,
        **database,
    }
    result = invoke(runner, ["run", "--migrate"], env=env)
    assert result.exit_code == 2
    assert "prod refuses SQLite" in result.stderr
    assert "[DATABASE]" in result.stderr
    assert "PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr
    assert fake_runner == []
    assert not (workdir / "prod.sqlite").exists()
    dev = invoke(runner, ["db", "current"], env={**database, "FLASK_CONFIG": "dev"})
    assert "prod refuses" not in dev.stderr


def test_run_refuses_a_bad_port(runner, workdir, fake_runner):
    result = invoke(runner, ["run", "--port", "70000"])
    assert result.exit_code == 2
    assert fake_runner == []


def test_gunicorn_run_and_bridge_need_a_migrated_database(runner, db_env, workdir, fake_runner):
    result = invoke(runner, ["gunicorn_run", "--port", "8200", "--workers", "2"], env=db_env)
    assert result.exit_code == 0, result.output
    assert invoke(runner, ["bridge"], env=db_env).exit_code == 0
    assert [kind for kind, _ in fake_runner] == ["gunicorn", "bridge"]
    assert (fake_runner[0][1]["port"], fake_runner[0][1]["workers"]) == (8200, 2)
    empty = {"JAXMBA_DATABASE_URL": f"sqlite+pysqlite:///{workdir / 'none.sqlite'}"}
    for command in (["gunicorn_run"], ["bridge"]):
        refused = invoke(runner, command, env=empty)
        assert refused.exit_code == 1
        assert "db upgrade" in refused.stderr
    assert len(fake_runner) == 2


def test_runserver_runs_the_flask_app(runner, db_env, monkeypatch):
    from flask import Flask

    seen = {}

    def fake_run(self, host=None, port=None, **options):
        seen.update(app=self, host=host, port=port, **options)

    monkeypatch.setattr(Flask, "run", fake_run)
    monkeypatch.setattr(manage, "configure_logging", lambda *args, **kwargs: None)
    result = invoke(runner, ["runserver", "--host", "127.0.0.3", "--port", "5055"], env=db_env)
    assert result.exit_code == 0, result.output
    assert (seen["host"], seen["port"], seen["threaded"]) == ("127.0.0.3", 5055, True)
    assert "/api/auth/login" in {rule.rule for rule in seen["app"].url_map.iter_rules()}


def test_shell_has_app_db_session_and_models(runner, db_env, monkeypatch):
    import code

    seen = {}

    def fake_interact(banner, local, exitmsg):
        seen.update(local, banner=banner)
        seen["users"] = local["session"].query(local["models"].User).count()

    monkeypatch.setattr(code, "interact", fake_interact)
    result = invoke(runner, ["shell"], env=db_env)
    assert result.exit_code == 0, result.output
    assert {"app", "db", "session", "models"} <= set(seen)
    assert seen["users"] == 0
    assert "test profile" in seen["banner"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["test", "-k", "auth", "-x"], ["-k", "auth", "-x"]),
        (["test_xml", "-q"], ["--junitxml=test-results/junit.xml", "-q"]),
        (["test-xml", "--output", "out/r.xml"], ["--junitxml=out/r.xml"]),
    ],
)
def test_test_commands_run_pytest(runner, workdir, monkeypatch, args, expected):
    calls = []

    def fake_call(argv, env):
        calls.append((argv, env))
        return 0

    monkeypatch.setattr(manage.subprocess, "call", fake_call)
    result = invoke(runner, args)
    assert result.exit_code == 0, result.output
    [(argv, env)] = calls
    assert argv[:3] == [sys.executable, "-m", "pytest"]
    assert argv[3:] == expected
    assert env["FLASK_CONFIG"] == "test"
    if "test-results" in expected[0] or "out/" in expected[0]:
        assert (workdir / expected[0].split("=", 1)[1]).parent.is_dir()


def test_test_command_passes_pytest_failures_on(runner, workdir, monkeypatch):
    monkeypatch.setattr(manage.subprocess, "call", lambda argv, env: 3)
    assert invoke(runner, ["test"]).exit_code == 3


@pytest.mark.parametrize(
    ("flags", "level", "access_log"),
    [([], "WARNING", None), (["-v"], "INFO", "-"), (["-vv"], "DEBUG", "-")],
)
def test_demo_is_quiet_unless_asked(runner, workdir, monkeypatch, flags, level, access_log):
    """The demo runs (and starts its bridge, agents and API) at WARNING; -v, -vv log more."""
    from controlsvc.ops import demo as demo_module
    from controlsvc.ops.runner import gunicorn_options, settings_env

    seen = {}
    monkeypatch.setattr(demo_module, "run_demo", lambda settings, **kw: seen.update(s=settings))
    monkeypatch.setattr(demo_module, "quiet_demo_logging", lambda: seen.update(quiet=True))
    monkeypatch.setattr(manage, "configure_logging", lambda level, *rest: seen.update(root=level))
    url = f"sqlite+pysqlite:///{workdir / 'demo.sqlite'}"
    result = invoke(runner, ["demo", *flags], env={"JAXMBA_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert seen["root"] == level
    assert seen.get("quiet", False) is (not flags)  # the mails (invite links) stay visible
    settings = seen["s"]
    assert settings.service.log_level == level
    assert settings_env(settings)["JAXMBA_SERVICE_LOG_LEVEL"] == level  # the bridge child
    assert gunicorn_options(settings, "127.0.0.1", 5000, 1)["accesslog"] == access_log
