"""All tables. Importing this package registers every model on `Base.metadata` (for Alembic)."""

from __future__ import annotations

from controlsvc.db import Base
from controlsvc.models.bridges import BridgeHeartbeat
from controlsvc.models.commands import Command
from controlsvc.models.enclosures import AgentEvent, Enclosure, EnclosureTransition, StatusRecord
from controlsvc.models.events import EventRecord, EventTicket
from controlsvc.models.jabs import JabsEnclosure, JabsSession
from controlsvc.models.ratelimit import AttemptCount
from controlsvc.models.session_templates import SessionTemplate
from controlsvc.models.sessions import (
    Alert,
    DesiredVersion,
    RecordingSession,
    SessionEnclosure,
    SessionGap,
    SessionSegment,
)
from controlsvc.models.users import EmailToken, RevokedToken, RevokedTokenFamily, User

__all__ = [
    "AgentEvent",
    "AttemptCount",
    "Alert",
    "Base",
    "BridgeHeartbeat",
    "Command",
    "DesiredVersion",
    "EmailToken",
    "Enclosure",
    "EnclosureTransition",
    "EventRecord",
    "EventTicket",
    "JabsEnclosure",
    "JabsSession",
    "RecordingSession",
    "RevokedToken",
    "RevokedTokenFamily",
    "SessionEnclosure",
    "SessionTemplate",
    "SessionGap",
    "SessionSegment",
    "StatusRecord",
    "User",
]
