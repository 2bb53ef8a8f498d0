"""What one simulated enclosure says and does, without any networking.

``SimulatedAgent`` holds an enclosure's reported state (boot id, ``seq``, the recording it is
doing, live view) and turns what it receives (a ``cmd`` or a ``desired`` payload, the passing
of time) into what it publishes (``Outbound`` messages), following the contract the real agent
follows:

* ``ping`` answers ``succeeded`` at once (as the real agent's quick commands do); ``rebirth``
  republishes state and status;
* ``start_recording`` is ``rejected`` while recording another session, ``stop_recording`` while
  idle; a command past ``expires_at`` answers ``expired`` and is not run; a malformed one that
  still carries an id is ``rejected`` with the reason;
* a ``desired`` document whose ``version`` is older than the one applied is ignored; otherwise
  the agent records what it names for as long as it says (``recording: null``: idle);
* every change of the reported picture publishes a status at once.

Statuses are serialised from a prepared dict (a few µs each, thousands per second); the unit
tests check that what comes out validates as ``schemas.Status``.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from hashlib import sha256
from typing import Any

from pydantic import BaseModel

from schemas import (
    Ack,
    AckResult,
    Command,
    CommandKind,
    ContractError,
    Desired,
    DesiredRecording,
    EnclosureStateMessage,
    Event,
    Lifecycle,
    RecordingStarted,
    RecordingStopped,
    SegmentClosed,
    SetConfigParams,
    StartLiveViewParams,
    StartRecordingParams,
    Topics,
    command_id_of,
    dump_message,
    parse_message,
    utc_now,
)

__all__ = [
    "DEFAULT_FPS",
    "AgentOptions",
    "OutKind",
    "Outbound",
    "Reaction",
    "SimulatedAgent",
]

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30  # frame rate of a recording that does not ask for one
REMEMBERED_COMMANDS = 256  # a QoS 1 redelivery of one of these is answered again, not re-run
SIMULATED_BYTES_PER_FRAME = 6_000  # what a 640x480 H.264 frame of a mouse cage roughly weighs
_GIB = 1 << 30


class OutKind(StrEnum):
    """What an outbound message is, for the fleet's counters."""

    STATE = "state"
    STATUS = "status"
    ACK = "ack"
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to publish (QoS 1)."""

    kind: OutKind
    topic: str
    payload: bytes
    retain: bool = False
    correlation_data: bytes | None = None
    result: AckResult | None = None  # for acks: which answer this is


@dataclass(slots=True)
class Reaction:
    """What the agent does in answer to a message: publish these, and maybe restart itself."""

    messages: list[Outbound] = field(default_factory=list)
    restart: bool = False
    invalid: str | None = None  # why the payload was refused, when it was


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """What every agent of a fleet shares."""

    topics: Topics
    agent_version: str
    status_interval_s: float
    default_fps: int = DEFAULT_FPS
    camera_source: str = "simulated"


@dataclass(slots=True)
class _Recording:
    session_id: str
    file_prefix: str
    started_at: datetime
    end_at: datetime | None
    fps: int
    from_desired: bool
    file: str

    def elapsed_s(self, now: datetime) -> float:
        return max(0.0, (now - self.started_at).total_seconds())

    def frames(self, now: datetime) -> int:
        return int(self.elapsed_s(now) * self.fps)


def _iso(value: datetime) -> str:
    return value.isoformat()


class SimulatedAgent:
    """One enclosure's simulated agent: state in, messages out. Not thread-safe (one loop)."""

    def __init__(self, eid: str, options: AgentOptions, *, rng: random.Random | None = None):
        self.eid = eid
        self.options = options
        self.status_interval_s = options.status_interval_s
        self._rng = rng or random.Random()  # noqa: S311 - simulated values, not secrets
        topics = options.topics
        self.state_topic = topics.state(eid)
        self.status_topic = topics.status(eid)
        self.ack_topic = topics.ack(eid)
        self.events_topic = topics.events(eid)
        self.cmd_topic = topics.cmd(eid)
        self.desired_topic = topics.desired(eid)
        self.boot_id = ""
        self.seq = -1
        self.booted_at = utc_now()
        self.desired_version = -1
        self.desired: Desired | None = None
        self.recording: _Recording | None = None
        self.live_view_until: datetime | None = None
        self._answers: OrderedDict[uuid.UUID, list[Outbound]] = OrderedDict()
        self._uptime_offset_s = self._rng.uniform(3_600, 30 * 86_400)
        self._system: dict[str, Any] = {}
        self._idle_format = ""
        self._handlers: dict[CommandKind, Callable[[Command, BaseModel, datetime], Reaction]] = {
            CommandKind.PING: self._ping,
            CommandKind.REBIRTH: self._rebirth,
            CommandKind.START_RECORDING: self._start_recording,
            CommandKind.STOP_RECORDING: self._stop_recording,
            CommandKind.START_LIVE_VIEW: self._start_live_view,
            CommandKind.STOP_LIVE_VIEW: self._stop_live_view,
            CommandKind.SNAPSHOT: self._snapshot,
            CommandKind.SET_CONFIG: self._set_config,
            CommandKind.RESTART_AGENT: self._restart_agent,
        }
        self.new_boot()

    # -- lifecycle --------------------------------------------------------------------------------
    def new_boot(self) -> None:
        """Start a new run of the agent: a new boot id, ``seq`` from 0, nothing applied yet.

        Like a real agent after a restart, it records again only what ``desired`` (retained,
        delivered again on subscribe) tells it to.
        """
        self.boot_id = uuid.uuid4().hex[:16]
        self.seq = -1
        self.booted_at = utc_now()
        self.desired_version = -1
        self.desired = None
        self.recording = None
        self.live_view_until = None
        self._answers.clear()
        self._system = {
            "load_1": round(self._rng.uniform(0.05, 0.6), 2),
            "load_5": round(self._rng.uniform(0.05, 0.5), 2),
            "load_15": round(self._rng.uniform(0.05, 0.4), 2),
            "ram_total_bytes": 8 * _GIB,
            "ram_free_bytes": self._rng.randrange(3 * _GIB, 6 * _GIB),
            "disk_total_bytes": 1024 * _GIB,
            "disk_free_bytes": self._rng.randrange(300 * _GIB, 900 * _GIB),
            "temperature_c": round(self._rng.uniform(38.0, 55.0), 1),
            "agent_version": self.options.agent_version,
            "os_release": "simulated (jaxmba fleet simulator)",
            "hostname": self.eid,
        }
        self._prepare_idle_format()

    def state_message(self, lifecycle: Lifecycle) -> Outbound:
        """The retained lifecycle message (also the Will, with ``lost``)."""
        message = EnclosureStateMessage(
            state=lifecycle,
            boot_id=self.boot_id,
            agent_version=self.options.agent_version,
            status_interval_s=self.status_interval_s,
        )
        return Outbound(OutKind.STATE, self.state_topic, dump_message(message), retain=True)

    def status_message(self, now: datetime | None = None) -> Outbound:
        """The next status heartbeat (``seq`` + 1), retained."""
        now = now or utc_now()
        self.seq += 1
        live_until = self.live_view_until
        if self.recording is None and (live_until is None or live_until <= now):
            at = now.isoformat()
            uptime = round(self._uptime_offset_s + (now - self.booted_at).total_seconds())
            text = self._idle_format % (at, self.seq, at, uptime)
        else:
            text = json.dumps(self._status_document(now), separators=(",", ":"))
        return Outbound(OutKind.STATUS, self.status_topic, text.encode(), retain=True)

    def _prepare_idle_format(self) -> None:
        """The idle status as a %-template: most statuses are idle, and filling a template costs
        a tenth of building and encoding the document (the unit tests compare both)."""
        marker = self.booted_at
        document = self._status_document(marker)
        document["at"] = document["camera"]["last_frame_at"] = "\x00AT\x00"
        document["seq"] = "\x00SEQ\x00"
        document["system"]["uptime_s"] = "\x00UP\x00"
        text = json.dumps(document, separators=(",", ":")).replace("%", "%%")
        for placeholder, spec in (("AT", "%s"), ("SEQ", "%d"), ("UP", "%d")):
            quoted = json.dumps(f"\x00{placeholder}\x00")
            text = text.replace(quoted, f'"{spec}"' if spec == "%s" else spec)
        self._idle_format = text

    def _status_document(self, now: datetime) -> dict[str, Any]:
        rec = self.recording
        camera: dict[str, Any] = {
            "source": self.options.camera_source,
            "connected": True,
            "recording": rec is not None,
            "measured_fps": float(rec.fps) if rec else 0.0,
            "target_fps": float(rec.fps) if rec else None,
            "frames_written": rec.frames(now) if rec else 0,
            "last_frame_at": _iso(now),
            "width": 640,
            "height": 480,
            "error": None,
        }
        recording = None
        if rec is not None:
            recording = {
                "session_id": rec.session_id,
                "file": rec.file,
                "segment_started_at": _iso(rec.started_at),
                "recorded_s": round(rec.elapsed_s(now), 3),
                "segments_closed": 0,
                "segment_frames": rec.frames(now),
            }
        live_until = self.live_view_until
        live_active = live_until is not None and live_until > now
        system = dict(self._system)
        system["uptime_s"] = round(self._uptime_offset_s + (now - self.booted_at).total_seconds())
        return {
            "v": 1,
            "at": _iso(now),
            "seq": self.seq,
            "boot_id": self.boot_id,
            "camera": camera,
            "recording": recording,
            "system": system,
            "clock": {"ntp_synchronized": True, "offset_s": 0.0, "skewed": False},
            "live_view": {
                "active": live_active,
                "until": _iso(live_until) if live_until is not None and live_active else None,
            },
            "last_error": None,
        }

    # -- commands ---------------------------------------------------------------------------------
    def on_command(
        self,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        now: datetime | None = None,
    ) -> Reaction:
        """Answer a ``cmd`` payload. ``response_topic``/``correlation_data`` are the MQTT 5
        properties it came with (they win over the same fields in the JSON)."""
        now = now or utc_now()
        try:
            command = parse_message(Command, payload)
        except ContractError as exc:
            command_id = command_id_of(payload)
            if command_id is None:
                return Reaction(invalid=str(exc))
            refusal = self._ack(
                command_id, AckResult.REJECTED, str(exc), response_topic, correlation_data
            )
            return Reaction([refusal], invalid=str(exc))
        topic = response_topic or command.response_topic
        correlation = correlation_data
        if correlation is None and command.correlation_data is not None:
            correlation = command.correlation_data.encode()

        answered = self._answers.get(command.id)
        if answered is not None:  # a QoS 1 redelivery: answer again, do not run it twice
            return Reaction(list(answered))
        if command.is_expired(now):
            detail = f"received after expires_at {_iso(command.expires_at)}"
            reaction = Reaction([self._ack(command.id, AckResult.EXPIRED, detail)])
        else:
            try:
                params = command.typed_params()
            except ContractError as exc:
                reaction = Reaction([self._ack(command.id, AckResult.REJECTED, str(exc))])
            else:
                reaction = self._handlers[command.kind](command, params, now)
        reaction.messages = [self._routed(m, topic, correlation) for m in reaction.messages]
        self._remember(command.id, [m for m in reaction.messages if m.kind is OutKind.ACK])
        return reaction

    def _remember(self, command_id: uuid.UUID, acks: list[Outbound]) -> None:
        final = [a for a in acks if a.result is not None and a.result.is_final]
        self._answers[command_id] = final or acks
        while len(self._answers) > REMEMBERED_COMMANDS:
            self._answers.popitem(last=False)

    def _ack(
        self,
        command_id: uuid.UUID,
        result: AckResult,
        detail: str | None,
        topic: str | None = None,
        correlation: bytes | None = None,
        data: dict[str, Any] | None = None,
    ) -> Outbound:
        message = Ack(command_id=command_id, result=result, detail=detail, data=data)
        return Outbound(
            OutKind.ACK,
            topic or self.ack_topic,
            dump_message(message),
            correlation_data=correlation,
            result=result,
        )

    def _routed(self, message: Outbound, topic: str | None, correlation: bytes | None) -> Outbound:
        """Handlers build acks for the default topic; send them where the command asked."""
        if message.kind is not OutKind.ACK:
            return message
        return Outbound(
            OutKind.ACK,
            topic or self.ack_topic,
            message.payload,
            correlation_data=correlation,
            result=message.result,
        )

    def _answer(
        self, command: Command, *results: tuple[AckResult, str | None, Any]
    ) -> list[Outbound]:
        return [self._ack(command.id, r, d, None, None, data) for r, d, data in results]

    def _ping(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        pong = {"pong": True, "agent_version": self.options.agent_version, "at": _iso(now)}
        return Reaction(self._answer(command, (AckResult.SUCCEEDED, None, pong)))

    def _rebirth(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        messages = [self.state_message(Lifecycle.READY), self.status_message(now)]
        messages += self._answer(command, (AckResult.SUCCEEDED, None, None))
        return Reaction(messages)

    def _start_recording(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        assert isinstance(params, StartRecordingParams)
        current = self.recording
        if current is not None:
            if current.session_id == params.session_id:
                current.end_at = now + timedelta(seconds=params.duration_s)
                detail = "already recording; end time updated"
                messages = self._answer(command, (AckResult.SUCCEEDED, detail, None))
                return Reaction([*messages, self.status_message(now)])
            reason = (
                f"already recording session {current.session_id!r};"
                f" stop it before starting {params.session_id!r}"
            )
            return Reaction(self._answer(command, (AckResult.REJECTED, reason, None)))
        messages = self._answer(command, (AckResult.ACCEPTED, None, None))
        end_at = now + timedelta(seconds=params.duration_s)
        fps = params.target_fps or self.options.default_fps
        messages += self._begin(
            params.session_id, params.file_prefix, now, end_at, fps, from_desired=False
        )
        messages.append(self.status_message(now))
        messages += self._answer(command, (AckResult.SUCCEEDED, None, None))
        return Reaction(messages)

    def _stop_recording(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        if self.recording is None:
            return Reaction(self._answer(command, (AckResult.REJECTED, "not recording", None)))
        messages = self._answer(command, (AckResult.ACCEPTED, None, None))
        messages += self._end(now, "stop_recording command")
        messages.append(self.status_message(now))
        messages += self._answer(command, (AckResult.SUCCEEDED, None, None))
        return Reaction(messages)

    def _start_live_view(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        assert isinstance(params, StartLiveViewParams)
        self.live_view_until = now + timedelta(seconds=params.duration_s)
        messages = [self.status_message(now)]
        detail = "simulated: live view reported, no preview frames are published"
        messages += self._answer(command, (AckResult.SUCCEEDED, detail, None))
        return Reaction(messages)

    def _stop_live_view(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        self.live_view_until = None
        messages = [self.status_message(now)]
        messages += self._answer(command, (AckResult.SUCCEEDED, None, None))
        return Reaction(messages)

    def _snapshot(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        reason = "a simulated enclosure has no camera to take a snapshot with"
        return Reaction(self._answer(command, (AckResult.FAILED, reason, None)))

    def _set_config(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        assert isinstance(params, SetConfigParams)
        changes = params.changes()
        if params.status_interval_s is not None:
            self.status_interval_s = params.status_interval_s
        messages = [self.status_message(now)]
        messages += self._answer(command, (AckResult.SUCCEEDED, None, {"applied": changes}))
        return Reaction(messages)

    def _restart_agent(self, command: Command, params: BaseModel, now: datetime) -> Reaction:
        messages = self._answer(command, (AckResult.SUCCEEDED, "restarting", None))
        return Reaction(messages, restart=True)

    # -- desired state ----------------------------------------------------------------------------
    def on_desired(self, payload: bytes, now: datetime | None = None) -> Reaction:
        """Apply a ``desired`` document unless it is older than the one applied."""
        now = now or utc_now()
        if not payload:  # the retained document was cleared: nothing is wanted
            desired = Desired(version=max(self.desired_version, 0))
        else:
            try:
                desired = parse_message(Desired, payload)
            except ContractError as exc:
                return Reaction(invalid=str(exc))
        if desired.version < self.desired_version:
            return Reaction()
        self.desired_version = desired.version
        self.desired = desired
        self.live_view_until = desired.live_view_until
        messages = self._reconcile(now)
        if not any(m.kind is OutKind.STATUS for m in messages):
            messages.append(self.status_message(now))
        return Reaction(messages)

    def tick(self, now: datetime | None = None) -> list[Outbound]:
        """Start or end recordings whose time has come (call at ``next_deadline()``)."""
        now = now or utc_now()
        messages: list[Outbound] = []
        rec = self.recording
        if rec is not None and rec.end_at is not None and now >= rec.end_at:
            messages += self._end(rec.end_at, "end reached")
        messages += self._reconcile(now)
        if messages and not any(m.kind is OutKind.STATUS for m in messages):
            messages.append(self.status_message(now))
        return messages

    def next_deadline(self) -> datetime | None:
        """When ``tick`` has something to do next, if ever."""
        times = []
        if self.recording is not None and self.recording.end_at is not None:
            times.append(self.recording.end_at)
        wanted = self.desired.recording if self.desired is not None else None
        current = self.recording.session_id if self.recording is not None else None
        if wanted is not None and current != wanted.session_id:
            times.append(wanted.start_at)
        return min(times) if times else None

    def _reconcile(self, now: datetime) -> list[Outbound]:
        wanted: DesiredRecording | None = self.desired.recording if self.desired else None
        active = wanted is not None and wanted.start_at <= now < wanted.end_at
        rec = self.recording
        messages: list[Outbound] = []
        wanted_id = wanted.session_id if wanted is not None and active else None
        if rec is not None and rec.from_desired and rec.session_id != wanted_id:
            messages += self._end(now, "desired")
            rec = None
        if active and wanted is not None and (rec is None or rec.session_id != wanted.session_id):
            if rec is not None:  # a command started another session: desired wins
                messages += self._end(now, "desired names another session")
            fps = wanted.target_fps or self.options.default_fps
            messages += self._begin(
                wanted.session_id, wanted.file_prefix, now, wanted.end_at, fps, from_desired=True
            )
        if messages:
            messages.append(self.status_message(now))
        return messages

    # -- recording --------------------------------------------------------------------------------
    def _begin(
        self,
        session_id: str,
        file_prefix: str,
        now: datetime,
        end_at: datetime | None,
        fps: int,
        *,
        from_desired: bool,
    ) -> list[Outbound]:
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        file = f"/var/lib/jaxmba-sim/{session_id}/{file_prefix}_{self.eid}_{stamp}.mkv"
        self.recording = _Recording(session_id, file_prefix, now, end_at, fps, from_desired, file)
        started = RecordingStarted(file=file, end_at=end_at, target_fps=float(fps))
        return [self._event(Event.of(started, session_id=session_id, at=now))]

    def _end(self, now: datetime, reason: str) -> list[Outbound]:
        rec = self.recording
        if rec is None:
            return []
        self.recording = None
        frames = rec.frames(now)
        segment = SegmentClosed(
            path=rec.file,
            session_id=rec.session_id,
            started_at=rec.started_at,
            ended_at=max(now, rec.started_at),
            frames=frames,
            bytes=frames * SIMULATED_BYTES_PER_FRAME,
            sha256=sha256(f"{rec.file}:{frames}".encode()).hexdigest(),
        )
        stopped = RecordingStopped(reason=reason, recorded_s=rec.elapsed_s(now), segments=1)
        return [
            self._event(Event.of(segment, at=now)),
            self._event(Event.of(stopped, session_id=rec.session_id, at=now)),
        ]

    def _event(self, event: Event) -> Outbound:
        return Outbound(OutKind.EVENT, self.events_topic, dump_message(event))
