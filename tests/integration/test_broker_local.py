"""LocalBroker against the real mosquitto: start, errors, restart with persistence, reload,
accounts, password hashes."""
# ruff: noqa: F811 (pytest fixtures imported from tests.support.broker are test arguments)

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from controlsvc.broker import (
    OPERATOR_USER,
    SERVICE_USER,
    BrokerAlreadyRunning,
    BrokerConfig,
    BrokerStartError,
    LocalBroker,
    PortInUseError,
    add_or_update_account,
    probe,
    read_password_file,
    verify_password,
)
from controlsvc.broker import local as broker_local
from controlsvc.broker.process import CHOSEN_PORTS_FROM, ephemeral_port_range
from tests.support.broker import (  # noqa: F401 (fixtures; redundant once conftest imports them)
    default_accounts,
    mosquitto_factory,
    mqtt_client,
    require_mosquitto,
    start_broker,
)
from tests.support.mqtt import ACCEPTED, NOT_AUTHORIZED, ConnectRefused, MqttTestClient
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # a broker (or several) per test

Factory = Callable[..., LocalBroker]
Connect = Callable[..., MqttTestClient]
DESIRED_A = "jaxmba/v1/enc/enc-a/desired"
CMD_A = "jaxmba/v1/enc/enc-a/cmd"


def test_start_listens_and_stop_cleans_up(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker", persistence=False)
    try:
        assert broker.running
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert probe(broker.host, broker.port)
        for name in ("mosquitto.conf", "passwd", "acl", "mosquitto.log", "mosquitto.pid"):
            assert (broker.directory / name).exists(), name
        assert (broker.directory / "passwd").stat().st_mode & 0o077 == 0
    finally:
        broker.stop()
    assert not broker.running
    assert not probe(broker.host, broker.port)
    assert not (broker.directory / "mosquitto.pid").exists()
    broker.stop()  # a second stop is harmless


def test_context_manager_stops_the_broker(tmp_path: Path) -> None:
    require_mosquitto()
    with LocalBroker(tmp_path, default_accounts()) as broker:
        port = broker.port
        assert probe("127.0.0.1", port)
    assert not broker.running
    assert not probe("127.0.0.1", port)


def test_port_already_in_use_is_a_clear_error(tmp_path: Path) -> None:
    require_mosquitto()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        broker = LocalBroker(tmp_path, default_accounts(), config=BrokerConfig(port=port))
        with pytest.raises(PortInUseError) as caught:
            broker.start()
    error = caught.value
    assert error.port == port
    assert error.host == "127.0.0.1"
    assert f"port {port} on 127.0.0.1 is already in use" in str(error)
    assert "Address already in use" in error.log_tail  # the broker's own words are included
    assert not broker.running


def test_a_picked_port_taken_before_the_broker_binds_it_is_picked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_mosquitto()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        offers = iter([taken])  # the race: "free" when picked, taken when mosquitto binds
        real = broker_local.find_free_port
        monkeypatch.setattr(
            broker_local, "find_free_port", lambda host="127.0.0.1": next(offers, 0) or real(host)
        )
        broker = LocalBroker(tmp_path, default_accounts())
        broker.start()
        try:
            assert broker.port != taken
            assert probe(broker.host, broker.port)
        finally:
            broker.stop()


def test_broker_that_exits_at_start_reports_its_log(tmp_path: Path) -> None:
    require_mosquitto()
    acl = tmp_path / "broken.acl"
    acl.write_text("user someone\ntopic sometimes a/b\n")
    broker = LocalBroker(tmp_path / "b", default_accounts(), config=BrokerConfig(acl_file=acl))
    with pytest.raises(BrokerStartError) as caught:
        broker.start()
    assert "exited with code" in caught.value.reason
    assert 'Invalid topic access type "sometimes"' in str(caught.value)


def test_second_broker_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = start_broker(tmp_path, persistence=False)
    try:
        conf_before = first.conf_file.read_text()
        second = LocalBroker(tmp_path, default_accounts())
        with pytest.raises(BrokerAlreadyRunning) as caught:
            second.start()
        assert caught.value.pid == first.pid
        assert f"kill {first.pid}" in str(caught.value)
        assert first.conf_file.read_text() == conf_before  # nothing of the first was rewritten
    finally:
        first.stop()


def test_start_after_a_crash_ignores_the_stale_pid_file(mosquitto_factory: Factory) -> None:
    broker = mosquitto_factory()
    port = broker.port
    broker.kill()
    assert (broker.directory / "mosquitto.pid").exists()  # a crash leaves it behind
    broker.start()
    assert broker.port == port
    assert probe(broker.host, port)


def test_restart_keeps_retained_messages_and_ports(
    mosquitto_factory: Factory, mqtt_client: Connect
) -> None:
    broker = mosquitto_factory(enclosure_port=0)
    ports = (broker.port, broker.enclosure_port)
    service = mqtt_client(broker, SERVICE_USER)
    assert service.publish(DESIRED_A, b'{"version": 7}', retain=True) in ACCEPTED
    service.disconnect()
    broker.restart()
    assert (broker.port, broker.enclosure_port) == ports
    enc = mqtt_client(broker, "enc-a")
    enc.subscribe(DESIRED_A)
    msg = enc.expect(DESIRED_A)
    assert msg.retain
    assert msg.payload == b'{"version": 7}'


def test_persistent_session_gets_commands_queued_while_it_was_away_across_a_restart(
    mosquitto_factory: Factory, mqtt_client: Connect
) -> None:
    broker = mosquitto_factory()
    session = {"clean_start": False, "session_expiry_s": 3600}
    enc = mqtt_client(broker, "enc-a", **session)
    enc.subscribe(CMD_A)
    enc.disconnect()
    service = mqtt_client(broker, SERVICE_USER)
    assert service.publish(CMD_A, b"queued") in ACCEPTED
    service.disconnect()
    broker.restart()
    enc = MqttTestClient(broker.host, broker.port, client_id="enc-a", **session)  # type: ignore[arg-type]
    try:
        assert enc.connect("enc-a", broker.accounts["enc-a"]) is True  # session present
        assert enc.expect(CMD_A).payload == b"queued"
    finally:
        enc.disconnect()


def test_reload_adds_and_removes_accounts(mosquitto_factory: Factory, mqtt_client: Connect) -> None:
    broker = mosquitto_factory()
    with pytest.raises(ConnectRefused):
        MqttTestClient.for_broker(broker, "enc-new", "pw-new-1")
    broker.set_account("enc-new", "pw-new-1")
    enc = mqtt_client(broker, "enc-new")
    # The per-enclosure patterns apply to the new account at once.
    assert enc.publish("jaxmba/v1/enc/enc-new/status", b"{}") in ACCEPTED
    assert enc.publish("jaxmba/v1/enc/enc-a/status", b"{}") == NOT_AUTHORIZED

    assert broker.remove_account("enc-new") is True
    assert "enc-new" not in read_password_file(broker.directory / "passwd")
    with pytest.raises(ConnectRefused):
        MqttTestClient.for_broker(broker, "enc-new", "pw-new-1", client_id="enc-new-2")
    # mosquitto 2.0 rechecks connected clients on reload: the removed account's connection ends.
    wait_for(lambda: not enc.connected, message="removed account still connected")


def test_changed_password_applies_after_reload(
    mosquitto_factory: Factory, mqtt_client: Connect
) -> None:
    broker = mosquitto_factory()
    old = broker.accounts["enc-b"]
    with_old_password = mqtt_client(broker, "enc-b", client_id="enc-b-old")
    other = mqtt_client(broker, "enc-a")
    broker.set_account("enc-b", "a-new-password")
    wait_for(lambda: not with_old_password.connected, message="old password still connected")
    assert other.connected
    with pytest.raises(ConnectRefused):
        MqttTestClient.for_broker(broker, "enc-b", old)
    mqtt_client(broker, "enc-b")  # with the new password from .accounts


def test_broker_accepts_mosquitto_passwd_hashes_and_ours_in_one_file(
    mosquitto_factory: Factory, mqtt_client: Connect
) -> None:
    mosquitto_passwd = shutil.which("mosquitto_passwd")
    if mosquitto_passwd is None:
        pytest.skip("mosquitto_passwd not installed (Debian package mosquitto)")
    broker = mosquitto_factory({SERVICE_USER: "svc-pw"})
    passwd = broker.directory / "passwd"
    subprocess.run([mosquitto_passwd, "-c", "-b", str(passwd), "enc-a", "theirs"], check=True)
    add_or_update_account(passwd, "enc-b", "ours")
    hashes = read_password_file(passwd)
    assert hashes["enc-a"].startswith("$7$101$")
    assert verify_password("theirs", hashes["enc-a"])
    broker.reload()
    mqtt_client(broker, "enc-a", "theirs")
    mqtt_client(broker, "enc-b", "ours")
    with pytest.raises(ConnectRefused):
        MqttTestClient.for_broker(broker, "enc-b", "theirs", client_id="x")


def test_operator_sub_command_prints_retained_state(
    mosquitto_factory: Factory, mqtt_client: Connect
) -> None:
    mosquitto_sub = shutil.which("mosquitto_sub")
    if mosquitto_sub is None:
        pytest.skip("mosquitto_sub not installed (Debian package mosquitto-clients)")
    broker = mosquitto_factory()
    service = mqtt_client(broker, SERVICE_USER)
    service.publish("jaxmba/v1/service/state", b'{"online": true}', retain=True)
    command = broker.operator_sub_command() + " -C 1 -W 5"
    assert OPERATOR_USER in command
    out = subprocess.run(command, shell=True, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'jaxmba/v1/service/state {"online": true}'


def test_keep_other_accounts_survives_a_rewrite(tmp_path: Path, mqtt_client: Connect) -> None:
    require_mosquitto()
    service_only = {SERVICE_USER: "svc-pw"}
    with LocalBroker(tmp_path, service_only):
        # The service registers an enclosure straight in the password file (as the API does).
        add_or_update_account(tmp_path / "passwd", "enc-registered", "enc-pw")
    with LocalBroker(tmp_path, service_only, keep_other_accounts=True) as broker:
        mqtt_client(broker, "enc-registered", "enc-pw")
        mqtt_client(broker, SERVICE_USER)
    # The default: the accounts given are the whole truth.
    with LocalBroker(tmp_path, service_only) as broker, pytest.raises(ConnectRefused):
        MqttTestClient.for_broker(broker, "enc-registered", "enc-pw")


def test_free_ports_come_from_below_the_ephemeral_range() -> None:
    """A broker must be able to start again on its port: one from the kernel's ephemeral range
    can meanwhile be any outgoing connection's source port (the broker-restart fault case)."""
    low, _high = ephemeral_port_range()
    for _ in range(20):
        port = broker_local.find_free_port()
        assert CHOSEN_PORTS_FROM <= port < low, (port, low)
        with socket.socket() as sock:
            # Bound as the broker binds: a port an earlier test's broker listened on may still
            # hold connections in TIME_WAIT, which only a bind without SO_REUSEADDR refuses.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # and nobody listens on it
