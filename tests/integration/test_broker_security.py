"""The shipped ACL (deploy/mosquitto/acl) enforced by a real mosquitto.

The broker runs a generated config on free loopback ports (the service's listener, the main
listener and an enclosure listener, both with ``use_username_as_clientid`` as on production's
8883, without TLS) that uses the
shipped ACL file itself and a generated password file. "Nothing delivered" is proven without
sleeping: after the forbidden message would have been queued, a marker the same subscriber may
receive is published; once the marker arrives, the forbidden message would have too.
"""
# ruff: noqa: F811 (pytest fixtures imported from tests.support.broker are test arguments)

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controlsvc.broker import OPERATOR_USER, SERVICE_USER, BrokerConfig, LocalBroker
from tests.support.broker import (  # noqa: F401 (fixtures; redundant once conftest imports them)
    SHIPPED_ACL,
    default_accounts,
    mqtt_client,
    require_mosquitto,
)
from tests.support.mqtt import ACCEPTED, NOT_AUTHORIZED, ConnectRefused, MqttTestClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

Connect = Callable[..., MqttTestClient]
P = "jaxmba/v1"
OWN_PUBLISH = ("state", "status", "ack", "events", "preview")
ALL_CHANNELS = (*OWN_PUBLISH, "cmd", "desired")
SHARED_STATUS = f"$share/controlsvc/{P}/enc/+/status"


def topic(eid: str, channel: str) -> str:
    return f"{P}/enc/{eid}/{channel}"


def qos_for(channel: str) -> int:
    return 0 if channel == "preview" else 1


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    require_mosquitto()
    local = LocalBroker(
        tmp_path_factory.mktemp("shipped-acl"),
        default_accounts(),
        config=BrokerConfig(acl_file=SHIPPED_ACL, enclosure_port=0, persistence=False),
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def fresh(broker: LocalBroker) -> Iterator[Callable[[], str]]:
    """New enclosure accounts, so no retained message of another test is around."""
    made: list[str] = []

    def make() -> str:
        eid = f"enc-{secrets.token_hex(4)}"
        broker.set_account(eid, secrets.token_urlsafe(16), reload=False)
        made.append(eid)
        return eid

    yield make
    for eid in made:
        broker.remove_account(eid, reload=False)


def reload_accounts(broker: LocalBroker) -> None:
    broker.reload()


def test_the_broker_uses_the_shipped_acl_file(broker: LocalBroker) -> None:
    assert f"acl_file {SHIPPED_ACL}\n" in broker.conf_file.read_text()


# -- authentication ------------------------------------------------------------------------------
@pytest.mark.parametrize("listener", ["main", "enclosure"])
def test_anonymous_clients_are_refused(broker: LocalBroker, listener: str) -> None:
    port = broker.port if listener == "main" else broker.enclosure_port
    assert port is not None
    with pytest.raises(ConnectRefused) as caught:
        MqttTestClient(broker.host, port, client_id="anon").connect(None)
    assert caught.value.reason_code == NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("enc-a", "wrong"),
        ("enc-a", ""),
        ("enc-unknown", "whatever"),
        (SERVICE_USER, "enc-a's password"),
    ],
)
def test_bad_credentials_are_refused(broker: LocalBroker, user: str, password: str) -> None:
    if password == "enc-a's password":
        password = broker.accounts["enc-a"]
    with pytest.raises(ConnectRefused) as caught:
        MqttTestClient.for_broker(broker, user, password)
    assert caught.value.reason_code == NOT_AUTHORIZED


# -- enclosures ----------------------------------------------------------------------------------
def test_enclosure_publishes_on_its_own_channels(broker: LocalBroker, mqtt_client: Connect) -> None:
    service = mqtt_client(broker, SERVICE_USER, client_id="svc-own")
    assert service.subscribe(f"{P}/enc/enc-a/#") == [1]
    enc = mqtt_client(broker, "enc-a")
    for channel in OWN_PUBLISH:
        retain = channel in ("state", "status")
        payload = f"own {channel}".encode()
        code = enc.publish(topic("enc-a", channel), payload, qos_for(channel), retain)
        assert code in ACCEPTED, channel
        assert service.expect(topic("enc-a", channel)).payload == payload


def test_enclosure_cannot_publish_on_another_enclosures_topics(
    broker: LocalBroker, mqtt_client: Connect
) -> None:
    watcher = mqtt_client(broker, SERVICE_USER, client_id="svc-watch-b")
    watcher.subscribe(f"{P}/enc/enc-b/#")
    attacker = mqtt_client(broker, "enc-a")
    for channel in ALL_CHANNELS:
        code = attacker.publish(topic("enc-b", channel), b"forged", 1, retain=True)
        assert code == NOT_AUTHORIZED, channel  # PUBACK 0x87, and the message is dropped
    victim = mqtt_client(broker, "enc-b")
    victim.publish(topic("enc-b", "events"), b"marker")
    assert watcher.expect(topic("enc-b", "events")).payload == b"marker"
    watcher.assert_none_queued()
    # Nothing forged was retained either: a new subscriber sees none of it.
    late = mqtt_client(broker, OPERATOR_USER, client_id="ops-late")
    late.subscribe(f"{P}/enc/enc-b/#")
    victim.publish(topic("enc-b", "events"), b"marker-2")
    late.expect(topic("enc-b", "events"))
    assert all(m.payload != b"forged" for m in late.received())


@pytest.mark.parametrize(
    "target",
    [
        topic("enc-a", "cmd"),
        topic("enc-a", "desired"),
        f"{P}/service/state",
        f"{P}/service/alerts",
        f"{P}/service/fleet/enc-a",
        f"{P}/enc/enc-a",
        f"{P}/enc/enc-a/status/extra",
        f"{P}/enc/enc-a/unknown",
        "elsewhere/topic",
    ],
)
def test_enclosure_cannot_write_outside_its_own_channels(
    broker: LocalBroker, mqtt_client: Connect, target: str
) -> None:
    enc = mqtt_client(broker, "enc-a")
    assert enc.publish(target, b"nope") == NOT_AUTHORIZED


def test_enclosure_cannot_read_other_enclosures(
    broker: LocalBroker, mqtt_client: Connect, fresh: Callable[[], str]
) -> None:
    reader, victim = fresh(), fresh()
    reload_accounts(broker)
    service = mqtt_client(broker, SERVICE_USER, client_id="svc-read-test")
    assert service.publish(topic(victim, "desired"), b"victim desired", retain=True) in ACCEPTED
    victim_client = mqtt_client(broker, victim)
    victim_client.publish(topic(victim, "status"), b"victim status", retain=True)

    enc = mqtt_client(broker, reader)
    filters = [
        topic(victim, "cmd"),
        topic(victim, "desired"),
        f"{P}/enc/+/cmd",
        f"{P}/enc/+/desired",
        f"$share/sneaky/{P}/enc/+/cmd",
        f"{P}/#",
        "#",
    ]
    for topic_filter in filters:
        # mosquitto 2.0.11 grants every SUBSCRIBE (the acl_file is checked at delivery);
        # a broker that refuses it up front is just as good.
        assert enc.subscribe(topic_filter)[0] in (1, NOT_AUTHORIZED), topic_filter

    service.publish(topic(victim, "cmd"), b"victim command")
    victim_client.publish(topic(victim, "events"), b"victim event")
    service.publish(topic(reader, "cmd"), b"marker")  # the reader may read this one
    assert enc.expect(topic(reader, "cmd")).payload == b"marker"
    allowed = {topic(reader, "cmd"), topic(reader, "desired"), f"{P}/service/state"}
    leaked = [(m.topic, m.payload) for m in enc.received() if m.topic not in allowed]
    assert not leaked


def test_enclosure_reads_its_own_cmd_desired_and_service_state(
    broker: LocalBroker, mqtt_client: Connect, fresh: Callable[[], str]
) -> None:
    eid = fresh()
    reload_accounts(broker)
    service = mqtt_client(broker, SERVICE_USER, client_id="svc-own-read")
    service.subscribe(f"{P}/enc/+/ack")
    assert service.publish(topic(eid, "desired"), b'{"version": 1}', retain=True) in ACCEPTED
    assert service.publish(f"{P}/service/state", b'{"online": true}', retain=True) in ACCEPTED

    enc = mqtt_client(broker, eid)
    assert enc.subscribe(topic(eid, "cmd")) == [1]
    assert enc.subscribe(topic(eid, "desired")) == [1]
    assert enc.subscribe(f"{P}/service/state") == [1]
    desired = enc.expect(topic(eid, "desired"))
    assert desired.retain
    assert desired.payload == b'{"version": 1}'
    assert enc.expect(f"{P}/service/state").retain

    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = topic(eid, "ack")
    props.CorrelationData = b"cmd-1"
    props.MessageExpiryInterval = 30
    assert service.publish(topic(eid, "cmd"), b'{"kind": "ping"}', properties=props) in ACCEPTED
    cmd = enc.expect(topic(eid, "cmd"))
    assert cmd.response_topic == topic(eid, "ack")
    assert cmd.correlation_data == b"cmd-1"
    assert cmd.message_expiry_interval is not None
    assert cmd.message_expiry_interval <= 30

    answer = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    answer.CorrelationData = cmd.correlation_data
    assert (
        enc.publish(cmd.response_topic, b'{"result": "succeeded"}', properties=answer) in ACCEPTED
    )
    ack = service.expect(topic(eid, "ack"))
    assert ack.correlation_data == b"cmd-1"


def test_retained_desired_reaches_an_enclosure_that_connects_later(
    broker: LocalBroker, mqtt_client: Connect, fresh: Callable[[], str]
) -> None:
    eid = fresh()
    reload_accounts(broker)
    service = mqtt_client(broker, SERVICE_USER, client_id="svc-desired")
    for version in (1, 2):
        body = f'{{"version": {version}}}'.encode()
        assert service.publish(topic(eid, "desired"), body, retain=True) in ACCEPTED
    enc = mqtt_client(broker, eid)
    enc.subscribe(topic(eid, "desired"))
    latest = enc.expect(topic(eid, "desired"))
    assert latest.retain
    assert latest.payload == b'{"version": 2}'  # only the latest intent is retained


def test_will_on_own_state_fires_and_a_will_on_another_enclosure_is_dropped(
    broker: LocalBroker, mqtt_client: Connect, fresh: Callable[[], str]
) -> None:
    eid, other = fresh(), fresh()
    reload_accounts(broker)
    service = mqtt_client(broker, SERVICE_USER, client_id="svc-wills")
    service.subscribe(f"{P}/enc/+/state")

    own = MqttTestClient(broker.host, broker.port, client_id=eid)
    own.will_set(topic(eid, "state"), b"lost")
    own.connect(eid, broker.accounts[eid])
    own.drop()
    assert service.expect(topic(eid, "state")).payload == b"lost"

    forger = MqttTestClient(broker.host, broker.port, client_id=f"{eid}-forger")
    forger.will_set(topic(other, "state"), b"lost")
    forger.connect(eid, broker.accounts[eid])  # accepted: the Will is checked when it fires
    forger.drop()
    # Taking over the client id makes the broker finish the old connection (and its Will) first.
    mqtt_client(broker, eid, client_id=f"{eid}-forger")
    service.publish(topic(other, "state"), b"marker")
    assert service.expect(topic(other, "state")).payload == b"marker"
    service.assert_none_queued(topic(other, "state"))


def test_enclosure_listener_stops_client_id_takeover(
    broker: LocalBroker, mqtt_client: Connect
) -> None:
    port = broker.enclosure_port
    victim = mqtt_client(broker, "enc-c", port=port, client_id="enc-c")
    # enc-d claims enc-c's client id; this listener replaces it with enc-d's user name.
    mqtt_client(broker, "enc-d", port=port, client_id="enc-c")
    assert victim.publish(topic("enc-c", "status"), b"still here") in ACCEPTED
    assert victim.connected


def test_the_main_listener_stops_client_id_takeover_too(
    broker: LocalBroker, mqtt_client: Connect
) -> None:
    """Every listener an enclosure can log in to forces the client id to the user name (see
    also test_broker_takeover.py, which runs every shipped config)."""
    victim = mqtt_client(broker, "enc-c", client_id="enc-c")
    mqtt_client(broker, "enc-d", client_id="enc-c")
    assert victim.publish(topic("enc-c", "status"), b"still here") in ACCEPTED
    assert victim.connected


# -- operator ------------------------------------------------------------------------------------
def test_operator_reads_everything(
    broker: LocalBroker, mqtt_client: Connect, fresh: Callable[[], str]
) -> None:
    eid = fresh()
    reload_accounts(broker)
    ops = mqtt_client(broker, OPERATOR_USER)
    assert ops.subscribe(f"{P}/#") == [1]
    assert ops.subscribe("$SYS/broker/version") == [1]
    assert ops.expect("$SYS/broker/version").payload.startswith(b"mosquitto version")
    service = mqtt_client(broker, SERVICE_USER, client_id="svc-for-ops")
    enc = mqtt_client(broker, eid)
    enc.publish(topic(eid, "status"), b"status for ops")
    service.publish(topic(eid, "cmd"), b"cmd for ops")
    service.publish(f"{P}/service/alerts", b"alert for ops")
    enc.publish(topic(eid, "preview"), b"jpeg", qos=0)
    assert ops.expect(topic(eid, "status")).payload == b"status for ops"
    assert ops.expect(topic(eid, "cmd")).payload == b"cmd for ops"
    assert ops.expect(f"{P}/service/alerts").payload == b"alert for ops"
    # the fleet's derived states: the service writes them (retained), operators read them
    assert service.publish(f"{P}/service/fleet/{eid}", b"fleet for ops", retain=True) in ACCEPTED
    assert ops.expect(f"{P}/service/fleet/{eid}").payload == b"fleet for ops"
    assert ops.expect(topic(eid, "preview")).payload == b"jpeg"


@pytest.mark.parametrize(
    "target",
    [
        *(topic(OPERATOR_USER, channel) for channel in ALL_CHANNELS),
        *(topic("enc-a", channel) for channel in ALL_CHANNELS),
        f"{P}/service/state",
        f"{P}/service/alerts",
        f"{P}/service/fleet/enc-a",
        "elsewhere/topic",
    ],
)
def test_operator_publishes_nothing(broker: LocalBroker, mqtt_client: Connect, target: str) -> None:
    ops = mqtt_client(broker, OPERATOR_USER, client_id="ops-pub")
    assert ops.publish(target, b"operator was here", retain=True) == NOT_AUTHORIZED


# -- service -------------------------------------------------------------------------------------
def test_service_shared_subscription_spreads_messages_over_the_group(
    broker: LocalBroker, mqtt_client: Connect, fresh: Callable[[], str]
) -> None:
    eid = fresh()
    reload_accounts(broker)
    bridges = [mqtt_client(broker, SERVICE_USER, client_id=f"bridge-{i}") for i in (1, 2)]
    for bridge in bridges:
        assert bridge.subscribe(SHARED_STATUS) == [1]
    enc = mqtt_client(broker, eid)
    sent = [f"status {i}".encode() for i in range(20)]
    for payload in sent:
        assert enc.publish(topic(eid, "status"), payload) in ACCEPTED

    def all_arrived() -> bool:
        return sum(len(b.received(topic(eid, "status"))) for b in bridges) >= len(sent)

    wait_for(all_arrived, message="shared subscription lost messages")
    got = [m.payload for b in bridges for m in b.received(topic(eid, "status"))]
    assert sorted(got) == sorted(sent)  # each message reached exactly one bridge
    assert all(b.received() for b in bridges)  # and both bridges took a share


def test_service_reads_and_writes_the_whole_tree(
    broker: LocalBroker, mqtt_client: Connect, fresh: Callable[[], str]
) -> None:
    eid = fresh()
    reload_accounts(broker)
    service = mqtt_client(broker, SERVICE_USER, client_id="svc-all")
    for channel in ("state", "ack", "events"):
        assert service.subscribe(f"$share/controlsvc/{P}/enc/+/{channel}") == [1]
    assert service.subscribe(f"{P}/enc/+/preview", qos=0) == [0]
    enc = mqtt_client(broker, eid)
    for channel in ("state", "ack", "events", "preview"):
        enc.publish(topic(eid, channel), channel.encode(), qos_for(channel))
        assert service.expect(topic(eid, channel)).payload == channel.encode()

    for target, retain in [
        (topic(eid, "cmd"), False),
        (topic(eid, "desired"), True),
        (f"{P}/service/state", True),
        (f"{P}/service/alerts", False),
    ]:
        assert service.publish(target, b"{}", retain=retain) in ACCEPTED, target
    assert service.subscribe("$SYS/broker/version") == [1]
    service.expect("$SYS/broker/version")
    assert service.publish("elsewhere/topic", b"x") == NOT_AUTHORIZED
