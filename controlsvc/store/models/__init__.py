"""All tables. Importing this package registers every model on `Base.metadata` (for Alembic)."""

from __future__ import annotations

from controlsvc.store.db import Base
from controlsvc.store.models.bridges import BridgeHeartbeat, BridgeLease
from controlsvc.store.models.commands import Command
from controlsvc.store.models.enclosures import (
    AgentEvent,
    Enclosure,
    EnclosureTransition,
    StatusRecord,
)
from controlsvc.store.models.events import EventRecord, EventTicket
from controlsvc.store.models.jabs import JabsEnclosure, JabsSession
from controlsvc.store.models.ratelimit import AttemptCount
from controlsvc.store.models.session_templates import SessionTemplate
from controlsvc.store.models.sessions import (
    Alert,
    DesiredVersion,
    RecordingSession,
    SessionEnclosure,
    SessionGap,
    SessionSegment,
)
from controlsvc.store.models.users import EmailToken, RevokedToken, RevokedTokenFamily, User

__all__ = [
    "AgentEvent",
    "AttemptCount",
    "Alert",
    "Base",
    "BridgeHeartbeat",
    "BridgeLease",
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
