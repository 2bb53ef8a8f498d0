"""The agent's config: TOML file, overrides, "key: reason" errors, the 0600 file writer."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from enclosure_agent.cli import cli
from enclosure_agent.config import (
    AgentConfig,
    Overrides,
    load_config,
    parse_broker_url,
    validate_config,
)
from enclosure_agent.configfile import EXAMPLE_VALUES, render_config, write_config
from enclosure_agent.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "agent" / "jaxmba-agent.example.toml"


def minimal(**sections: dict[str, object]) -> dict[str, object]:
    data: dict[str, object] = {
        "agent": {"enclosure_id": "enc-01", "state_dir": "/tmp/state"},
        "broker": {"url": "mqtt://enc-01:secret@127.0.0.1:1883"},
        "recording": {"root": "/tmp/rec"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}  # type: ignore[dict-item]
    return data


def test_defaults_of_a_minimal_file() -> None:
    config = validate_config(minimal())
    assert config.version == 1
    assert config.enclosure_id == "enc-01"
    assert config.status.interval_s == 5
    assert config.camera.source == "testpattern"
    assert config.broker.parsed.password == "secret"
    assert config.outbox_path == Path("/tmp/state/outbox.sqlite3")
    assert config.topics.status("enc-01") == "jaxmba/v1/enc/enc-01/status"


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user", "password"),
    [
        ("mqtt://h", "h", 1883, False, None, None),
        ("mqtts://enc-1:p%40ss@broker.lab:9999", "broker.lab", 9999, True, "enc-1", "p@ss"),
        ("mqtts://enc-1@[::1]", "::1", 8883, True, "enc-1", None),
    ],
)
def test_broker_urls(
    url: str, host: str, port: int, tls: bool, user: str | None, password: str | None
) -> None:
    parsed = parse_broker_url(url)
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)
    assert (parsed.username, parsed.password) == (user, password)
    assert "p@ss" not in parsed.redacted()


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"agent": {"enclosure_id": "Enc_1"}}, "agent.enclosure_id: enclosure id 'Enc_1' contains"),
        ({"broker": {"url": "http://x"}}, "broker.url: scheme must be mqtt:// or mqtts://"),
        ({"broker": {"url": "mqtt://h:99999"}}, "broker.url: port must be a number"),
        ({"broker": {"topic_prefix": "a/#"}}, "broker.topic_prefix:"),
        ({"camera": {"source": "testpattern:blue"}}, "camera: unknown test pattern variant"),
        ({"camera": {"fps": 0}}, "camera.fps: Input should be greater than or equal to 1"),
        ({"recording": {"crf": 60}}, "recording.crf: Input should be less than or equal to 51"),
        ({"recording": {"preset": "warp"}}, "recording.preset: Input should be"),
        ({"status": {"interval_s": 0.1}}, "status.interval_s:"),
        ({"status": {"interval_s": 1e-9}}, "status.interval_s: Input should be greater than or"),
        ({"agent": {"colour": "blue"}}, "agent.colour: Extra inputs are not permitted"),
        (
            {"broker": {"url": "mqtt://enc-02:pw@h"}},
            "broker.url user 'enc-02' must be the enclosure id 'enc-01'",
        ),
    ],
)
def test_errors_name_the_key(sections: dict[str, dict[str, object]], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(minimal(**sections))
    assert expected in str(info.value)


def test_version_is_checked() -> None:
    with pytest.raises(ConfigError, match="version: this agent reads config version 1"):
        validate_config({**minimal(), "version": 2})


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nenclosure_id = "enc-01"\n[broker]\nurl = "mqtt://h"\n[recording]\nroot = "/r"\n'
    )
    config = load_config(
        path,
        Overrides(
            enclosure_id="enc-02",
            broker="mqtt://enc-02:pw@other:1884",
            recordings=tmp_path / "rec",
            camera="testpattern:grey",
            state_dir=tmp_path / "state",
        ),
    )
    assert config.enclosure_id == "enc-02"
    assert config.broker.parsed.port == 1884
    assert config.recording.root == tmp_path / "rec"
    assert config.camera.source == "testpattern:grey"
    assert config.state_dir == tmp_path / "state"


def test_flags_alone_need_the_essentials() -> None:
    with pytest.raises(ConfigError, match="--broker, --recordings"):
        load_config(None, Overrides(enclosure_id="enc-01"))


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_config_that_is_not_utf8_is_one_line_naming_the_file(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'[agent]\nenclosure_id = "enc-01"\nname = "caf\xe9"\n')  # Latin-1
    result = CliRunner().invoke(cli, [command, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"{path}: not UTF-8 text (byte 0xe9 at offset 43)" in result.output
    assert "Traceback" not in result.output


def test_state_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = minimal()
    data["agent"] = {"enclosure_id": "enc-01"}
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/jaxmba-agent")
    assert validate_config(data).state_dir == Path("/var/lib/jaxmba-agent")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert validate_config(data).state_dir == tmp_path / "jaxmba-agent" / "enc-01"


def test_with_changes_validates() -> None:
    config = validate_config(minimal())
    assert config.with_changes("status", interval_s=2).status.interval_s == 2
    with pytest.raises(ConfigError, match="status.interval_s"):
        config.with_changes("status", interval_s=0)


def test_the_example_file_is_the_template() -> None:
    assert EXAMPLE.read_text() == render_config(**EXAMPLE_VALUES)
    config = validate_config(tomllib.loads(EXAMPLE.read_text()))
    assert isinstance(config, AgentConfig)


def test_written_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "agent.toml"
    write_config(path, "x = 1\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_config(path, "x = 2\n")
    write_config(path, "x = 2\n", overwrite=True)
    assert path.read_text() == "x = 2\n"


def test_cli_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["run", "--enclosure-id", "BAD", "--broker", "ftp://x", "--recordings", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "agent.enclosure_id: enclosure id 'BAD'" in result.output
    assert "broker.url: scheme must be" in result.output
    assert "Traceback" not in result.output


def test_cli_init_config_writes_a_valid_private_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    args = [
        "init-config",
        str(path),
        "--enclosure-id",
        "enc-07",
        "--broker",
        "mqtt://enc-07:pw@127.0.0.1:1883",
        "--recordings",
        str(tmp_path / "rec"),
        "--state-dir",
        str(tmp_path / "state"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path).enclosure_id == "enc-07"
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1
    assert "exists" in again.output


def test_cli_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("jaxmba-agent, version ")
