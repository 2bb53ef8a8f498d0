"""`jaxmba-ctl` bad input that needs no service: real subprocesses, one line, right exit code.

The commands against a running service (the demo) are in tests/e2e/test_ctl.py, which reuses
the helpers here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlsvc.broker import find_free_port

CTL = str(Path(sys.executable).with_name("jaxmba-ctl"))
RUN_TIMEOUT_S = 60


def ctl_env(config_home: Path) -> dict[str, str]:
    """The environment of a user whose config directory is ``config_home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMBA_")}
    env["XDG_CONFIG_HOME"] = str(config_home)
    env["COLUMNS"] = "200"  # wide tables: nothing folded in assertions
    return env


def run_ctl(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CTL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed run (and no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jaxmba-ctl: "), lines[0]
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return ctl_env(tmp_path / "config")


def test_bad_param_exits_2_in_one_line(env: dict[str, str]) -> None:
    result = run_ctl(env, "command", "send", "enc-01", "ping", "--param", "novalue")
    assert result.returncode == 2
    assert "KEY=VALUE" in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["enclosures", "show", "Enc_01"], "lowercase"),
        (["command", "send", "enc-01", "fly"], "fly"),
        (["sessions", "create", "--name", "x", "--enclosure", "enc-01", "--duration", "1"], "EID"),
        (
            ["sessions", "create", "--name", "x", "--enclosure", "e:a", "--duration", "10 parsecs"],
            "duration",
        ),
        (["mqtt", "pub", "enc/+/cmd", "{}", "--broker", "mqtt://u:p@127.0.0.1:1"], "wildcard"),
        (["mqtt", "sub", "--broker", "http://u:p@127.0.0.1:1"], "broker URL"),
        (["mqtt", "sub"], "--broker"),
        (["nonsense"], "nonsense"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    env: dict[str, str], args: list[str], expected: str
) -> None:
    result = run_ctl(env, *args)
    assert result.returncode == 2, result.stderr
    assert expected in one_error_line(result)


def test_unreachable_service_is_one_clear_line(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{find_free_port()}"
    login = run_ctl(env, "--url", url, "login", "--email", "a@b.org", "--password-stdin", stdin="x")
    assert login.returncode == 1
    assert f"cannot reach the jaxmba service at {url}" in one_error_line(login)
    not_logged_in = run_ctl(env, "--url", url, "enclosures", "list")
    assert not_logged_in.returncode == 1
    assert "not logged in" in one_error_line(not_logged_in)


def test_unreachable_broker_is_one_clear_line(env: dict[str, str]) -> None:
    port = find_free_port()
    result = run_ctl(env, "mqtt", "sub", "--broker", f"mqtt://u:p@127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot reach the broker at mqtt://127.0.0.1:{port}" in one_error_line(result)


def test_provision_refuses_bad_ids_and_existing_files(env: dict[str, str], tmp_path: Path) -> None:
    common = ["--broker-url", "mqtt://127.0.0.1:1883", "--recordings", "/srv/rec"]
    passwd = tmp_path / "passwd"
    bad = run_ctl(env, "provision", "Bad/Id", "--password-file", str(passwd), *common)
    assert bad.returncode == 2
    assert "enclosure id" in one_error_line(bad)
    existing = tmp_path / "enc-01.toml"
    existing.write_text("keep me\n")
    again = run_ctl(
        env, "provision", "enc-01", "--password-file", str(passwd), "--out", str(existing), *common
    )
    assert again.returncode == 2
    assert "--force" in one_error_line(again)
    assert existing.read_text() == "keep me\n"
    assert not passwd.exists()  # nothing touched before the checks passed


def test_provision_writes_account_and_private_config(env: dict[str, str], tmp_path: Path) -> None:
    from controlsvc.broker import read_password_file, verify_password

    passwd, out = tmp_path / "passwd", tmp_path / "enc-07.toml"
    result = run_ctl(
        env,
        "--json",
        "provision",
        "enc-07",
        "--password-file",
        str(passwd),
        "--broker-url",
        "mqtts://broker.example.org:8883",
        "--recordings",
        "/srv/rec",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    import tomllib
    from urllib.parse import unquote, urlsplit

    url = urlsplit(tomllib.loads(out.read_text())["broker"]["url"])
    assert (url.scheme, url.username, url.hostname, url.port) == (
        "mqtts",
        "enc-07",
        "broker.example.org",
        8883,
    )
    assert verify_password(unquote(url.password or ""), read_password_file(passwd)["enc-07"])


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(env: dict[str, str], shell: str) -> None:
    result = run_ctl(env, "completion", shell)
    assert result.returncode == 0, result.stderr
    assert "_JAXMBA_CTL_COMPLETE" in result.stdout
    builtin = subprocess.run(
        [CTL],
        env={**env, "_JAXMBA_CTL_COMPLETE": f"{shell}_source"},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert builtin.stdout == result.stdout


def test_completion_completes_commands(env: dict[str, str]) -> None:
    result = subprocess.run(
        [CTL],
        env={
            **env,
            "_JAXMBA_CTL_COMPLETE": "bash_complete",
            "COMP_WORDS": "jaxmba-ctl enc",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert "enclosures" in result.stdout
