"""The MQTT topic tree: build topics, parse received ones, check topics we publish to.

::

    {prefix}/service/state        service -> all      QoS 1, retained (Will: online=false)
    {prefix}/service/alerts       service -> all      QoS 1
    {prefix}/service/fleet/{eid}  service -> all      QoS 1, retained (derived enclosure state)
    {prefix}/service/events       service -> service  QoS 0 (new rows in the event log)
    {prefix}/enc/{eid}/state      agent -> all        QoS 1, retained (Will: lost)
    {prefix}/enc/{eid}/status     agent -> service    QoS 1, retained
    {prefix}/enc/{eid}/desired    service -> agent    QoS 1, retained
    {prefix}/enc/{eid}/cmd        service -> agent    QoS 1
    {prefix}/enc/{eid}/ack        agent -> service    QoS 1
    {prefix}/enc/{eid}/events     agent -> service    QoS 1
    {prefix}/enc/{eid}/preview    agent -> viewers    QoS 0 (JPEG bytes)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from schemas.errors import TopicError
from schemas.ids import validate_enclosure_id

__all__ = [
    "AGENT_PUBLISHES",
    "AGENT_SUBSCRIBES",
    "CHANNEL_QOS",
    "CHANNEL_RETAINED",
    "DEFAULT_PREFIX",
    "SERVICE_EVENTS_QOS",
    "SERVICE_QOS",
    "Channel",
    "ParsedTopic",
    "Topics",
    "valid_publish_topic",
]

DEFAULT_PREFIX = "jaxmba/v1"
MAX_TOPIC_BYTES = 65535  # MQTT: a topic is a UTF-8 string with a 16-bit length


class Channel(StrEnum):
    """The last level of an enclosure topic: ``{prefix}/enc/{eid}/{channel}``."""

    STATE = "state"
    STATUS = "status"
    DESIRED = "desired"
    CMD = "cmd"
    ACK = "ack"
    EVENTS = "events"
    PREVIEW = "preview"


CHANNEL_QOS: dict[Channel, int] = {
    Channel.STATE: 1,
    Channel.STATUS: 1,
    Channel.DESIRED: 1,
    Channel.CMD: 1,
    Channel.ACK: 1,
    Channel.EVENTS: 1,
    Channel.PREVIEW: 0,  # a lost preview frame is replaced by the next one
}
CHANNEL_RETAINED: dict[Channel, bool] = {
    Channel.STATE: True,
    Channel.STATUS: True,
    Channel.DESIRED: True,
    Channel.CMD: False,
    Channel.ACK: False,
    Channel.EVENTS: False,
    Channel.PREVIEW: False,
}
SERVICE_QOS = 1  # service/state and service/fleet/+ (retained), service/alerts (not)
# service/events only says "look": a reader that misses one catches up with the next or reads
# the log on its own, so QoS 0, not retained.
SERVICE_EVENTS_QOS = 0

# What an enclosure's broker account may publish to and read under its own ``enc/{eid}/``
# (plus ``{prefix}/service/state``); the ACL is generated from these.
AGENT_PUBLISHES: tuple[Channel, ...] = (
    Channel.STATE,
    Channel.STATUS,
    Channel.ACK,
    Channel.EVENTS,
    Channel.PREVIEW,
)
AGENT_SUBSCRIBES: tuple[Channel, ...] = (Channel.CMD, Channel.DESIRED)


class ParsedTopic(NamedTuple):
    """An enclosure topic taken apart; unpacks as ``eid, channel``."""

    eid: str
    channel: Channel


def valid_publish_topic(topic: str) -> str:
    """Return ``topic`` if we may publish to it, else raise ``TopicError``.

    Refuses empty topics, wildcards (``+``, ``#``), NUL characters and topics over 65535 bytes.
    """
    if not topic:
        raise TopicError("topic must not be empty")
    if "+" in topic or "#" in topic:
        raise TopicError(f"topic {topic!r} contains a wildcard ('+' or '#'); cannot publish to it")
    if "\0" in topic:
        raise TopicError(f"topic {topic!r} contains a NUL character")
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise TopicError(f"topic is longer than {MAX_TOPIC_BYTES} bytes")
    return topic


def _validate_prefix(prefix: str) -> None:
    if not prefix:
        raise TopicError("topic prefix must not be empty")
    if prefix.startswith("/") or prefix.endswith("/"):
        raise TopicError(f"topic prefix {prefix!r} must not start or end with '/'")
    if "//" in prefix:
        raise TopicError(f"topic prefix {prefix!r} has an empty level ('//')")
    if prefix.startswith("$"):
        raise TopicError(f"topic prefix {prefix!r} must not start with '$' (reserved by brokers)")
    valid_publish_topic(prefix)


# A dict lookup: ``Channel(value)`` costs ~7 us, on every message the bridge receives.
_CHANNELS: dict[str, Channel] = {c.value: c for c in Channel}


def _channel(channel: Channel | str) -> Channel:
    found = _CHANNELS.get(channel)
    if found is None:
        known = ", ".join(c.value for c in Channel)
        raise TopicError(f"unknown channel {channel!r}; known: {known}")
    return found


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder and parser for one prefix (default ``jaxmba/v1``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        _validate_prefix(self.prefix)

    # -- service topics ---------------------------------------------------------------------------
    def service_state(self) -> str:
        """``{prefix}/service/state``: retained service liveness (its Will says offline)."""
        return f"{self.prefix}/service/state"

    def service_alerts(self) -> str:
        """``{prefix}/service/alerts``: alerts for operators, not retained."""
        return f"{self.prefix}/service/alerts"

    def fleet(self, eid: str) -> str:
        """``{prefix}/service/fleet/{eid}``: the enclosure's derived state, retained."""
        try:
            validate_enclosure_id(eid)
        except ValueError as exc:
            raise TopicError(str(exc)) from None
        return f"{self.prefix}/service/fleet/{eid}"

    def fleet_filter(self) -> str:
        """``{prefix}/service/fleet/+``: every enclosure's derived state."""
        return f"{self.prefix}/service/fleet/+"

    def service_events(self) -> str:
        """``{prefix}/service/events``: "the event log has new rows", between service processes."""
        return f"{self.prefix}/service/events"

    def service_auth(self) -> str:
        """``{prefix}/service/auth``: users whose tokens changed, between API processes (QoS 1,
        not retained; ``schemas.service_auth.TokensChanged``)."""
        return f"{self.prefix}/service/auth"

    # -- enclosure topics -------------------------------------------------------------------------
    def enc(self, eid: str, channel: Channel | str) -> str:
        """``{prefix}/enc/{eid}/{channel}``; raises ``TopicError`` for a bad id or channel."""
        try:
            validate_enclosure_id(eid)
        except ValueError as exc:
            raise TopicError(str(exc)) from None
        return f"{self.prefix}/enc/{eid}/{_channel(channel).value}"

    def state(self, eid: str) -> str:
        return self.enc(eid, Channel.STATE)

    def status(self, eid: str) -> str:
        return self.enc(eid, Channel.STATUS)

    def desired(self, eid: str) -> str:
        return self.enc(eid, Channel.DESIRED)

    def cmd(self, eid: str) -> str:
        return self.enc(eid, Channel.CMD)

    def ack(self, eid: str) -> str:
        return self.enc(eid, Channel.ACK)

    def events(self, eid: str) -> str:
        return self.enc(eid, Channel.EVENTS)

    def preview(self, eid: str) -> str:
        return self.enc(eid, Channel.PREVIEW)

    # -- subscription filters ---------------------------------------------------------------------
    def enc_filter(self, channel: Channel | str) -> str:
        """``{prefix}/enc/+/{channel}``: one channel of every enclosure."""
        return f"{self.prefix}/enc/+/{_channel(channel).value}"

    def all_filter(self) -> str:
        """``{prefix}/#``: everything (what an operator watches)."""
        return f"{self.prefix}/#"

    @staticmethod
    def shared(group: str, topic_filter: str) -> str:
        """``$share/{group}/{filter}``: an MQTT 5 shared subscription (load spread over a group)."""
        if not group or any(c in group for c in "/+#"):
            raise TopicError(f"shared subscription group {group!r} must be non-empty without / + #")
        if not topic_filter:
            raise TopicError("topic filter must not be empty")
        return f"$share/{group}/{topic_filter}"

    # -- parsing ----------------------------------------------------------------------------------
    def parse(self, topic: str) -> ParsedTopic:
        """Split ``{prefix}/enc/{eid}/{channel}`` into ``(eid, channel)``.

        Raises ``TopicError`` for a topic outside ``{prefix}/enc/``, an invalid enclosure id,
        an unknown channel or extra levels.
        """
        head = f"{self.prefix}/enc/"
        if not topic.startswith(head):
            raise TopicError(f"topic {topic!r} is not under {head!r}")
        levels = topic[len(head) :].split("/")
        if len(levels) != 2:
            raise TopicError(f"topic {topic!r} is not {head}<enclosure id>/<channel>")
        eid, channel = levels
        try:
            validate_enclosure_id(eid)
        except ValueError as exc:
            raise TopicError(f"topic {topic!r}: {exc}") from None
        return ParsedTopic(eid, _channel(channel))
