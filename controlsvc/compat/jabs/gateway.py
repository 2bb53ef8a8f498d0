"""The legacy heartbeat gateway: an original device client's heartbeat becomes the telemetry an
MQTT agent sends (lifecycle, status, recording events), written by the bridge's own ``Writer``
so it moves enclosures and sessions exactly as an agent's messages do; the answer is the
original's command, decided by ``heartbeat.decide`` from the enclosure's ``desired`` state.

Only registered devices are heard (``legacy``): from a network of ``[JABS]
heartbeat_networks``, or with the device's token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.writer import Writer
from controlsvc.compat.jabs import ids
from controlsvc.compat.jabs.heartbeat import (
    Assignment,
    Decision,
    DeviceCommand,
    Outcome,
    Report,
    decide,
)
from controlsvc.compat.jabs.shapes import KIB, MIB, HeartbeatIn
from controlsvc.config.settings import Settings
from controlsvc.domain.enclosure_state import Liveness
from controlsvc.domain.errors import Forbidden
from controlsvc.domain.session_state import EncState
from controlsvc.store.db import Database, as_utc, utcnow
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.jabs import JabsEnclosure, JabsSession
from controlsvc.store.models.sessions import DesiredVersion, SessionEnclosure
from schemas.codec import dump_message
from schemas.enums import Lifecycle
from schemas.events import Event, RecordingFailed, RecordingStarted, RecordingStopped
from schemas.messages import (
    CameraStatus,
    ClockStatus,
    EnclosureStateMessage,
    RecordingStatus,
    Status,
    SystemStatus,
    WireMessage,
)
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = ["AGENT_VERSION", "BOOT_ID", "DEFAULT_TARGET_FPS", "Gateway", "Reply", "token_hash"]

# Legacy devices have no boot id; every heartbeat of one counts in one run, ordered by
# ``seq`` (the service's clock in milliseconds).
BOOT_ID = "jabs-device-client"
AGENT_VERSION = "jabs-device-client"
# The original's default frame rate, sent when a session leaves it to the agent.
DEFAULT_TARGET_FPS = 30
# A device clock further off than this is reported skewed (the agent's default threshold).
CLOCK_SKEW_S = 2.0


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Reply:
    """The command to answer (None: 204) and the START parameters (a JSON string)."""

    command: DeviceCommand | None
    parameters: str | None = None

    def body(self) -> dict[str, Any] | None:
        if self.command is None:
            return None
        return {"command_name": self.command.value, "parameters": self.parameters}


@dataclass(frozen=True, slots=True)
class _Context:
    eid: str
    lifecycle: str | None
    boot_id: str | None
    report: Report
    assignment: Assignment | None
    reported_state: EncState | None
    stream_wanted: bool
    start: dict[str, Any] | None  # the START parameters for the desired session


def _clock(heartbeat: HeartbeatIn, now: datetime) -> ClockStatus:
    """The device's clock offset from ours, from its timestamp (the original only logged it)."""
    if heartbeat.timestamp is None:
        return ClockStatus()
    offset = (heartbeat.timestamp - now).total_seconds()
    return ClockStatus(offset_s=round(offset, 3), skewed=abs(offset) > CLOCK_SKEW_S)


class Gateway:
    """Turns heartbeats into telemetry and commands; one per app (thread-safe)."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._db = database
        self.topics = Topics(settings.mqtt.topic_prefix)
        self._networks = settings.jabs.networks()
        self._keepalive = timedelta(seconds=settings.jabs.stream_keepalive_s)
        # The state message's interval makes the bridge's liveness timer call a device lost
        # (DOWN) after [JABS] down_after_s of silence.
        self._interval_s = settings.jabs.down_after_s / settings.service.lost_after_intervals
        self.stats = BridgeStats()
        self._writer = Writer(
            database,
            self.topics,
            Liveness(settings.service.status_interval_s, settings.service.lost_after_intervals),
            self.stats,
        )

    # -- who may send ---------------------------------------------------------------------
    def _admit(self, session: Session, name: str, address: str | None, token: str | None) -> str:
        """The enclosure of a registered device allowed to send; else ``Forbidden``."""
        row = session.scalar(select(JabsEnclosure).where(JabsEnclosure.hostname == name.lower()))
        if row is None:
            raise Forbidden(
                f"device {name!r} is not registered (an admin registers it with "
                "`jaxmba-service jabs_register_device`)",
                field="name",
            )
        enc = session.get(Enclosure, row.enclosure_id)
        if enc is None or enc.retired_at is not None:
            raise Forbidden(f"device {name!r} is enclosure {row.enclosure_id}, which is retired")
        if token is not None:
            if row.token_hash and hmac.compare_digest(row.token_hash, token_hash(token)):
                return row.enclosure_id
            raise Forbidden(f"wrong token for device {name!r}", field="token")
        if address is not None and self._trusted(address):
            return row.enclosure_id
        raise Forbidden(
            f"device {name!r} sent no token and {address} is not in [JABS] heartbeat_networks",
            field="token",
        )

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    # -- the heartbeat ----------------------------------------------------------------------
    def handle(
        self, heartbeat: HeartbeatIn, *, address: str | None, token: str | None
    ) -> tuple[Reply, int | None]:
        """Admit, decide, write the telemetry; the reply and the newest event-log id."""
        now = utcnow()
        with self._db.sessionmaker() as session:
            eid = self._admit(session, heartbeat.name, address, token)
            context = self._context(session, eid, heartbeat, now)
            if heartbeat.location is not None:
                enc = session.get(Enclosure, eid)
                if enc is not None and enc.location != heartbeat.location:
                    enc.location = heartbeat.location
            session.commit()
        decision = decide(
            context.report,
            context.assignment,
            context.reported_state,
            stream_wanted=context.stream_wanted,
        )
        recorded = self._writer.write(
            self._writer.parse(self._telemetry(context, heartbeat, decision, now))
        )
        if decision.outcome is not None:
            log.info(
                "legacy device %s: %s in session %s%s",
                eid,
                decision.outcome.value,
                decision.session_id,
                f" ({decision.message})" if decision.message else "",
            )
        parameters = None
        if decision.command is DeviceCommand.START and context.start is not None:
            parameters = json.dumps(context.start)
        return Reply(decision.command, parameters), (recorded.last_id if recorded else None)

    def _context(
        self, session: Session, eid: str, heartbeat: HeartbeatIn, now: datetime
    ) -> _Context:
        enc = session.get(Enclosure, eid)
        assert enc is not None  # the foreign key of jabs_enclosures
        jabs_row = session.scalar(select(JabsEnclosure).where(JabsEnclosure.enclosure_id == eid))
        stream_at = jabs_row.stream_requested_at if jabs_row is not None else None
        reported_sid = None
        if heartbeat.session_id is not None:
            row = session.get(JabsSession, heartbeat.session_id) if heartbeat.session_id else None
            reported_sid = row.session_id if row is not None else None
        camera = heartbeat.sensor_status.camera
        report = Report(
            named=heartbeat.session_id is not None,
            session_id=reported_sid,
            recording=camera.recording,
            err_msg=heartbeat.err_msg,
        )
        assignment = None
        start = None
        desired = session.get(DesiredVersion, eid)
        recording = (desired.document or {}).get("recording") if desired is not None else None
        if desired is not None and desired.session_id and isinstance(recording, dict):
            se = self._part(session, desired.session_id, eid)
            if se is not None:
                start_at = datetime.fromisoformat(str(recording["start_at"]))
                end_at = datetime.fromisoformat(str(recording["end_at"]))
                assignment = Assignment(desired.session_id, EncState(se.state), start_at <= now)
                jid = ids.session_ids(session, [desired.session_id])[desired.session_id]
                start = {
                    "session_id": jid,
                    # The device records for this long from when it starts: until the end.
                    "duration": max(1, math.ceil((as_utc(end_at) - now).total_seconds())),
                    "fragment_hourly": bool(recording.get("fragment_hourly")),
                    "apply_filter": bool(recording.get("apply_filter")),
                    "target_fps": int(recording.get("target_fps") or DEFAULT_TARGET_FPS),
                    "file_prefix": se.file_prefix,
                }
        reported_state = None
        if reported_sid is not None:
            part = self._part(session, reported_sid, eid)
            reported_state = EncState(part.state) if part is not None else None
        return _Context(
            eid=eid,
            lifecycle=enc.lifecycle,
            boot_id=enc.boot_id,
            report=report,
            assignment=assignment,
            reported_state=reported_state,
            stream_wanted=stream_at is not None and now - stream_at <= self._keepalive,
            start=start,
        )

    @staticmethod
    def _part(session: Session, sid: str, eid: str) -> SessionEnclosure | None:
        return session.scalar(
            select(SessionEnclosure).where(
                SessionEnclosure.session_id == sid, SessionEnclosure.enclosure_id == eid
            )
        )

    # -- telemetry ---------------------------------------------------------------------------
    def _telemetry(
        self, context: _Context, heartbeat: HeartbeatIn, decision: Decision, now: datetime
    ) -> list[Inbound]:
        """The messages an agent would have sent: its lifecycle (once), the status, and the
        event of the outcome (its id names the session, so a repeat is stored once)."""
        eid = context.eid
        messages: list[tuple[str, WireMessage]] = []
        if context.lifecycle != Lifecycle.READY.value or context.boot_id != BOOT_ID:
            messages.append(
                (
                    self.topics.state(eid),
                    EnclosureStateMessage(
                        state=Lifecycle.READY,
                        boot_id=BOOT_ID,
                        agent_version=AGENT_VERSION,
                        status_interval_s=self._interval_s,
                        at=now,
                    ),
                )
            )
        messages.append((self.topics.status(eid), self._status(context, heartbeat, now)))
        event = self._event(decision, heartbeat, now)
        if event is not None:
            messages.append((self.topics.events(eid), event))
        return [
            Inbound(
                topic=topic, payload=dump_message(message), qos=1, retain=False, received_at=now
            )
            for topic, message in messages
        ]

    @staticmethod
    def _status(context: _Context, heartbeat: HeartbeatIn, now: datetime) -> Status:
        camera = heartbeat.sensor_status.camera
        system = heartbeat.system_info
        duration = camera.duration or 0
        fps = float(camera.fps) if camera.fps is not None else None
        recording = None
        sid = context.report.session_id
        if camera.recording and sid is not None:
            recording = RecordingStatus(
                session_id=sid,
                file="",
                segment_started_at=now - timedelta(seconds=duration),
                recorded_s=duration,
            )
        return Status(
            seq=int(now.timestamp() * 1000),
            boot_id=BOOT_ID,
            at=now,
            camera=CameraStatus(
                source="jabs-device-client",
                connected=True,
                recording=camera.recording,
                measured_fps=fps,
                frames_written=int(duration * (fps or 1)) if camera.recording else 0,
                last_frame_at=now if camera.recording else None,
            ),
            recording=recording,
            clock=_clock(heartbeat, now),
            system=SystemStatus(
                uptime_s=system.uptime,
                # The client reports one load average.
                load_1=system.load,
                load_5=system.load,
                load_15=system.load,
                ram_total_bytes=system.total_ram * KIB,
                ram_free_bytes=system.free_ram * KIB,
                disk_total_bytes=system.total_disk * MIB,
                disk_free_bytes=system.free_disk * MIB,
                agent_version=AGENT_VERSION,
                os_release=system.release,
                hostname=heartbeat.name,
            ),
            last_error=None if camera.recording else heartbeat.err_msg,
        )

    @staticmethod
    def _event(decision: Decision, heartbeat: HeartbeatIn, now: datetime) -> Event | None:
        sid = decision.session_id
        if decision.outcome is None or sid is None:
            return None
        camera = heartbeat.sensor_status.camera
        payload: RecordingStarted | RecordingStopped | RecordingFailed
        if decision.outcome is Outcome.STARTED:
            payload = RecordingStarted(target_fps=camera.fps)
        elif decision.outcome is Outcome.STOPPED:
            payload = RecordingStopped(reason=None, recorded_s=camera.duration)
        else:
            payload = RecordingFailed(reason=decision.message or "the device reported an error")
        return Event.of(payload, session_id=sid, event_id=f"jabs-{decision.outcome}-{sid}", at=now)
