"""render_config (generated brokers), the shipped production mosquitto.conf, and locating the
binary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controlsvc.broker import (
    BrokerConfig,
    InvalidBrokerSetting,
    LocalBroker,
    MosquittoNotInstalled,
    mosquitto_binary,
    render_config,
)
from controlsvc.broker import process as broker_process

SHIPPED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def full_config(**overrides: object) -> BrokerConfig:
    values: dict[str, object] = {
        "port": 18830,
        "service_port": 18829,
        "password_file": Path("/srv/broker/passwd"),
        "service_password_file": Path("/srv/broker/passwd-service"),
        "acl_file": Path("/srv/broker/acl"),
        "persistence_location": Path("/srv/broker/data"),
        "log_file": Path("/srv/broker/mosquitto.log"),
    }
    values.update(overrides)
    return BrokerConfig(**values)  # type: ignore[arg-type]


def test_render_config_defaults() -> None:
    lines = settings(render_config(full_config()))
    for expected in [
        "per_listener_settings true",
        "set_tcp_nodelay true",
        "max_queued_messages 1000000",
        "max_queued_bytes 536870912",
        "max_inflight_messages 1000",
        "max_packet_size 4194304",
        "persistence true",
        "persistence_location /srv/broker/data",
        "autosave_interval 60",
        "persistent_client_expiration 14d",
        "log_dest file /srv/broker/mosquitto.log",
        "log_type information",
    ]:
        assert expected in lines
    # listener options follow their listener: the service's alone, then the bound one
    first = lines.index("listener 18829 127.0.0.1")
    assert lines[first:] == [
        "listener 18829 127.0.0.1",
        "allow_anonymous false",
        "password_file /srv/broker/passwd-service",
        "acl_file /srv/broker/acl",
        "listener 18830 127.0.0.1",
        "use_username_as_clientid true",
        "allow_anonymous false",
        "password_file /srv/broker/passwd",
        "acl_file /srv/broker/acl",
    ]
    assert not any(line.startswith(("pid_file", "user ")) for line in lines)


def test_render_config_options() -> None:
    text = render_config(
        full_config(
            enclosure_port=18831,
            persistence=False,
            persistent_client_expiration=None,
            log_file=None,
            log_types=("error", "warning"),
            pid_file=Path("/run/b.pid"),
            run_as_user="root",
            max_queued_messages=5000,
            max_queued_bytes=1 << 20,
            autosave_interval_s=1,
        )
    )
    lines = settings(text)
    assert "persistence false" in lines
    dropped = ("persistence_location", "autosave", "persistent_client")
    assert not any(line.startswith(dropped) for line in lines)
    assert "log_dest stderr" in lines
    assert [line for line in lines if line.startswith("log_type")] == [
        "log_type error",
        "log_type warning",
    ]
    assert "pid_file /run/b.pid" in lines
    assert "user root" in lines
    assert "max_queued_messages 5000" in lines
    assert "max_queued_bytes 1048576" in lines
    assert lines[-5:] == [
        "listener 18831 127.0.0.1",
        "use_username_as_clientid true",
        "allow_anonymous false",
        "password_file /srv/broker/passwd",
        "acl_file /srv/broker/acl",
    ]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"port": 0}, "port must be 1-65535"),
        ({"port": 70000}, "port must be 1-65535"),
        ({"enclosure_port": 18830}, "must differ"),
        ({"enclosure_port": 18829}, "must differ"),
        ({"service_port": 18830}, "must differ"),
        ({"service_port": 0}, "service_port must be 1-65535"),
        ({"service_password_file": None}, "needs service_password_file"),
        ({"password_file": None}, "needs password_file"),
        ({"acl_file": None}, "needs acl_file"),
        ({"persistence_location": None}, "needs persistence_location"),
        ({"persistent_client_expiration": "2 weeks"}, "persistent_client_expiration"),
        ({"log_types": ("loud",)}, "log_types"),
        ({"max_packet_size": 10}, "max_packet_size"),
        ({"max_queued_messages": -1}, "max_queued_messages"),
        ({"max_queued_bytes": -1}, "max_queued_bytes"),
        ({"log_file": Path("/tmp/a\nlistener 1 0.0.0.0")}, "line break"),
        ({"run_as_user": "root\nallow_anonymous true"}, "run_as_user"),
    ],
)
def test_render_config_refuses(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidBrokerSetting, match=match):
        render_config(full_config(**overrides))


def test_shipped_production_config() -> None:
    lines = settings(SHIPPED_CONF.read_text())
    for expected in [
        "per_listener_settings true",
        "persistence true",
        "set_tcp_nodelay true",
        "max_queued_messages 1000000",
        "max_queued_bytes 536870912",
        "listener 1883 127.0.0.1",
        "listener 8883",
        "cafile /etc/mosquitto/certs/ca.crt",
        "certfile /etc/mosquitto/certs/server.crt",
        "keyfile /etc/mosquitto/certs/server.key",
        "require_certificate false",
        "use_username_as_clientid true",
    ]:
        assert expected in lines, expected
    assert any(line.startswith("autosave_interval ") for line in lines)
    # The TLS options belong to the 8883 listener, after the plain one.
    assert lines.index("listener 1883 127.0.0.1") < lines.index("listener 8883")
    assert lines.index("listener 8883") < lines.index("keyfile /etc/mosquitto/certs/server.key")
    # Each listener names its accounts; client ids are bound wherever others than the service
    # can log in (the takeover itself is tested against a running broker).
    blocks: dict[str, list[str]] = {}
    for line in lines[lines.index("listener 1883 127.0.0.1") :]:
        if line.startswith("listener "):
            current = blocks.setdefault(line, [])
        else:
            current.append(line)
    assert set(blocks) == {"listener 1883 127.0.0.1", "listener 1884 127.0.0.1", "listener 8883"}
    for listener, options in blocks.items():
        assert "allow_anonymous false" in options, listener
        assert "acl_file /etc/mosquitto/acl" in options, listener
        if listener == "listener 1883 127.0.0.1":
            assert "password_file /etc/mosquitto/passwd-service" in options
            assert "use_username_as_clientid true" not in options
        else:
            assert "password_file /etc/mosquitto/passwd" in options, listener
            assert "use_username_as_clientid true" in options, listener


def test_missing_binary_names_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(broker_process, "_FALLBACK_BINARIES", (str(tmp_path / "nope"),))
    with pytest.raises(MosquittoNotInstalled, match="apt-get install mosquitto"):
        mosquitto_binary()
    with pytest.raises(MosquittoNotInstalled, match="does not exist"):
        mosquitto_binary(tmp_path / "mosquitto")


def test_binary_found_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "mosquitto"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    assert mosquitto_binary() == str(fake)


def test_local_broker_needs_information_logging(tmp_path: Path) -> None:
    with pytest.raises(InvalidBrokerSetting, match="information"):
        LocalBroker(tmp_path, {}, config=BrokerConfig(log_types=("error", "warning")))
