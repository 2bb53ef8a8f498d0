from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    CHANNEL_QOS,
    CHANNEL_RETAINED,
    DEFAULT_PREFIX,
    Channel,
    TopicError,
    Topics,
    valid_publish_topic,
)

VALID_IDS = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")
PREFIXES = st.lists(st.from_regex(r"\A[a-z0-9_-]{1,10}\Z"), min_size=1, max_size=4).map("/".join)


def test_default_topic_tree():
    t = Topics()
    assert t.prefix == DEFAULT_PREFIX == "jaxmba/v1"
    assert t.service_state() == "jaxmba/v1/service/state"
    assert t.service_alerts() == "jaxmba/v1/service/alerts"
    assert t.service_events() == "jaxmba/v1/service/events"
    assert t.state("enc-01") == "jaxmba/v1/enc/enc-01/state"
    assert t.status("enc-01") == "jaxmba/v1/enc/enc-01/status"
    assert t.desired("enc-01") == "jaxmba/v1/enc/enc-01/desired"
    assert t.cmd("enc-01") == "jaxmba/v1/enc/enc-01/cmd"
    assert t.ack("enc-01") == "jaxmba/v1/enc/enc-01/ack"
    assert t.events("enc-01") == "jaxmba/v1/enc/enc-01/events"
    assert t.preview("enc-01") == "jaxmba/v1/enc/enc-01/preview"
    assert t.enc("enc-01", "status") == t.status("enc-01")
    assert t.enc_filter(Channel.STATUS) == "jaxmba/v1/enc/+/status"
    assert t.all_filter() == "jaxmba/v1/#"
    assert (
        Topics.shared("controlsvc", t.enc_filter("ack")) == "$share/controlsvc/jaxmba/v1/enc/+/ack"
    )


def test_custom_prefix():
    t = Topics("site-a/jaxmba/v1")
    assert t.status("e1") == "site-a/jaxmba/v1/enc/e1/status"
    assert t.parse("site-a/jaxmba/v1/enc/e1/status") == ("e1", Channel.STATUS)


@pytest.mark.parametrize("prefix", ["", "/jaxmba", "jaxmba/", "a//b", "jax+/v1", "jax/#", "$SYS/x"])
def test_bad_prefixes_are_refused(prefix):
    with pytest.raises(TopicError):
        Topics(prefix)


def test_every_channel_has_qos_and_retention():
    assert set(CHANNEL_QOS) == set(Channel) == set(CHANNEL_RETAINED)
    assert CHANNEL_QOS[Channel.PREVIEW] == 0
    assert [c for c in Channel if CHANNEL_RETAINED[c]] == [
        Channel.STATE,
        Channel.STATUS,
        Channel.DESIRED,
    ]


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("other/v1/enc/e1/status", "is not under"),
        ("jaxmba/v1/service/state", "is not under"),
        ("jaxmba/v1/enc/e1", "is not jaxmba/v1/enc/"),
        ("jaxmba/v1/enc/e1/status/extra", "is not jaxmba/v1/enc/"),
        ("jaxmba/v1/enc/E1/status", "use lowercase"),
        ("jaxmba/v1/enc//status", "must not be empty"),
        ("jaxmba/v1/enc/e1/bogus", "unknown channel"),
        ("jaxmba/v1/enc/e1/", "unknown channel"),
    ],
)
def test_parse_refuses_foreign_topics(topic, reason):
    with pytest.raises(TopicError, match=reason):
        Topics().parse(topic)


def test_topic_error_is_a_value_error():
    assert issubclass(TopicError, ValueError)


def test_building_with_a_bad_id_or_channel_fails():
    t = Topics()
    with pytest.raises(TopicError, match="contains '\\+'"):
        t.status("+")
    with pytest.raises(TopicError, match="contains '/'"):
        t.cmd("a/b")
    with pytest.raises(TopicError, match="unknown channel"):
        t.enc("e1", "nope")
    with pytest.raises(TopicError, match="unknown channel"):
        t.enc_filter("#")


@pytest.mark.parametrize("group", ["", "a/b", "a+", "#"])
def test_shared_group_is_checked(group):
    with pytest.raises(TopicError):
        Topics.shared(group, "x/#")


@pytest.mark.parametrize("topic", ["", "a/+/b", "a/#", "#", "a\0b", "x" * 70000])
def test_valid_publish_topic_refuses(topic):
    with pytest.raises(TopicError):
        valid_publish_topic(topic)


def test_valid_publish_topic_accepts():
    assert valid_publish_topic("jaxmba/v1/enc/e1/cmd") == "jaxmba/v1/enc/e1/cmd"


@given(PREFIXES, VALID_IDS, st.sampled_from(list(Channel)))
def test_build_parse_round_trip(prefix, eid, channel):
    t = Topics(prefix)
    topic = t.enc(eid, channel)
    assert valid_publish_topic(topic) == topic
    parsed = t.parse(topic)
    assert parsed == (eid, channel)
    assert parsed.eid == eid
    assert parsed.channel is channel
