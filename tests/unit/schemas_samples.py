"""Sample messages for the schema tests (one valid instance of every wire message)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas import (
    Ack,
    AckResult,
    Alert,
    AlertSeverity,
    CameraStatus,
    ClockStatus,
    Command,
    CommandKind,
    Desired,
    DesiredRecording,
    EnclosureStateMessage,
    Event,
    Lifecycle,
    LiveViewStatus,
    RecordingStatus,
    SegmentClosed,
    ServiceState,
    Status,
    SystemStatus,
    WireMessage,
)

T0 = datetime(2024, 3, 31, 0, 59, 58, tzinfo=UTC)


def status(seq: int = 0) -> Status:
    return Status(
        at=T0,
        seq=seq,
        boot_id="6f1c",
        camera=CameraStatus(
            source="testpattern",
            connected=True,
            recording=True,
            measured_fps=29.97,
            target_fps=30,
            frames_written=1200,
            last_frame_at=T0,
            width=640,
            height=480,
        ),
        recording=RecordingStatus(
            session_id="s-1",
            file="/rec/s-1/mouse_enc-01_20240331T005958Z.mkv",
            segment_started_at=T0,
            recorded_s=40.0,
            segments_closed=2,
        ),
        system=SystemStatus(
            uptime_s=3600,
            load_1=0.5,
            load_5=0.4,
            load_15=0.3,
            ram_total_bytes=8 << 30,
            ram_free_bytes=4 << 30,
            disk_total_bytes=1 << 40,
            disk_free_bytes=1 << 39,
            temperature_c=51.5,
            agent_version="1.0.0",
            os_release="Debian 12 / Linux 6.1",
            hostname="enc-01",
        ),
        clock=ClockStatus(ntp_synchronized=True, offset_s=0.012, skewed=False),
        live_view=LiveViewStatus(active=True, until=T0 + timedelta(seconds=30)),
        last_error=None,
    )


def all_messages() -> list[WireMessage]:
    segment = SegmentClosed(
        path="/rec/s-1/mouse_enc-01_20240331T000000Z.mkv",
        session_id="s-1",
        started_at=T0 - timedelta(hours=1),
        ended_at=T0,
        frames=108_000,
        bytes=123_456_789,
        sha256="ab" * 32,
        sidecar_path="/rec/s-1/mouse_enc-01_20240331T000000Z.frames.csv",
    )
    return [
        ServiceState(at=T0, online=True, version="1.0.0", started_at=T0, heartbeat_interval_s=30),
        EnclosureStateMessage(at=T0, state=Lifecycle.READY, boot_id="6f1c", agent_version="1.0.0"),
        status(),
        Desired(
            at=T0,
            version=7,
            recording=DesiredRecording(
                session_id="s-1",
                file_prefix="mouse",
                start_at=T0,
                end_at=T0 + timedelta(hours=2),
                target_fps=30,
                fragment_hourly=True,
            ),
            live_view_until=None,
        ),
        Command(
            at=T0,
            id=uuid.UUID(int=1),
            kind=CommandKind.START_LIVE_VIEW,
            params={"duration_s": 60},
            expires_at=T0 + timedelta(seconds=30),
            response_topic="jaxmba/v1/enc/enc-01/ack",
            correlation_data=str(uuid.UUID(int=1)),
        ),
        Ack(at=T0, command_id=uuid.UUID(int=1), result=AckResult.SUCCEEDED, data={"pong": True}),
        Event.of(segment, event_id=str(uuid.UUID(int=2)), at=T0),
        Alert(
            at=T0,
            alert_id="enc-01/lost",
            kind="enclosure_lost",
            severity=AlertSeverity.CRITICAL,
            enclosure_id="enc-01",
            message="enc-01 lost its connection",
        ),
    ]
