"""Importing a JABS database (PostgreSQL or SQLite): users, devices and the session history.

Read-only on the source; one transaction on ours (a dry run rolls it back). Idempotent: what
was imported before (same email, same JABS device or session id) is left as it is.

- users keep their email and admin flag (admin -> admin, else operator); a password hash the
  original made (SHA-512 of password + salt) is kept and verifies, and is replaced by argon2id
  at the first login (``passwords``);
- devices become enclosures: the original name is the display name, the id is derived from it
  (``ids.derive_enclosure_id``, made unique with the JABS id when two names collide) and
  reported; each keeps its JABS id and is registered as a legacy device (heard from
  ``[JABS] heartbeat_networks`` until an admin gives it a token);
- sessions keep their JABS id, name, times and settings, and each device's outcome with its
  message and recorded seconds (a ``recording_stopped`` fact, as a legacy device reports it).
  A session still IN_PROGRESS cannot go on here: it is imported canceled, and reported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from controlsvc.compat.jabs import ids
from controlsvc.domain import passwords
from controlsvc.domain.errors import ConfigError
from controlsvc.store import enclosures
from controlsvc.store.db import as_utc, utcnow
from controlsvc.store.models.enclosures import AgentEvent, Enclosure
from controlsvc.store.models.jabs import JabsEnclosure, JabsSession
from controlsvc.store.models.sessions import MESSAGE_LENGTH, RecordingSession, SessionEnclosure
from controlsvc.store.models.users import User
from schemas.enums import EventKind, Role, SessionStatus
from schemas.rest.enclosures import EnclosureCreate

log = logging.getLogger(__name__)

__all__ = ["ImportReport", "import_jabs", "source_engine"]

IMPORTED_REASON = "imported from JABS"
STOPPED_BY_MIGRATION = "in progress when imported from JABS: stopped by the migration"
DEFAULT_PREFIX = "video_recording"
_PREFIX_BAD = re.compile(r"[^A-Za-z0-9._-]+")
# The original's per-device outcomes -> ours (a session IN_PROGRESS: see _row_state).
_ROW_STATES = {
    "COMPLETE": "completed",
    "FAILED": "failed",
    "CANCELED": "canceled",
    "PENDING": "canceled",
    "RECORDING": "canceled",
}


@dataclass
class ImportReport:
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, line: str | None = None) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        if line:
            self.lines.append(line)

    def summary(self) -> str:
        return ", ".join(f"{n} {key}" for key, n in sorted(self.counts.items())) or "nothing"


def source_engine(url: str) -> Engine:
    """The JABS database, read through SQLAlchemy (a bare ``postgres://`` is accepted)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"--database-url: not a database URL ({exc})") from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if not parsed.drivername.startswith(("postgresql", "sqlite")):
        raise ConfigError("--database-url: JABS ran on PostgreSQL or SQLite only")
    return create_engine(parsed)


def _rows(source: Engine, query: str) -> list[Mapping[str, Any]]:
    try:
        with source.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(query))]
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise ConfigError(f"--database-url: not a readable JABS database ({reason})") from None


def _enum(value: Any) -> str:
    """An enum column as the original stored it (its member name)."""
    return str(getattr(value, "name", value)).split(".")[-1].upper()


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


def _prefix(*candidates: Any) -> str:
    for value in candidates:
        if isinstance(value, str) and value.strip():
            cleaned = _PREFIX_BAD.sub("_", value.strip()).lstrip("._-")[:64]
            if cleaned:
                return cleaned
    return DEFAULT_PREFIX


def _clip(message: Any) -> str | None:
    if message is None:
        return None
    value = str(message)
    return value if len(value) <= MESSAGE_LENGTH else value[: MESSAGE_LENGTH - 3] + "..."


def import_jabs(source: Engine, session: Session, *, now: datetime | None = None) -> ImportReport:
    """Import everything from ``source`` into ``session`` (flushed; the caller commits)."""
    now = now or utcnow()
    report = ImportReport()
    _users(source, session, report, now)
    devices = _devices(source, session, report, now)
    _sessions(source, session, report, devices, now)
    _fix_sequences(session)
    return report


def _users(source: Engine, session: Session, report: ImportReport, now: datetime) -> None:
    auth = {
        row["uid"]: row for row in _rows(source, "SELECT uid, salt, password_hash FROM simple_auth")
    }
    for row in _rows(
        source,
        "SELECT id, email_address, admin FROM user ORDER BY id".replace("FROM user", 'FROM "user"'),
    ):
        email = str(row["email_address"]).strip().lower()
        if session.scalar(select(User.id).where(User.email == email)) is not None:
            report.add("users kept", f"user {email}: already here, left as it is")
            continue
        secret = auth.get(row["id"])
        stored = ""
        if secret is not None and secret["salt"] and secret["password_hash"]:
            stored = passwords.jabs_hash(str(secret["salt"]), str(secret["password_hash"]))
        role = Role.ADMIN if row["admin"] else Role.OPERATOR
        session.add(User(email=email, password_hash=stored, role=role.value, created_at=now))
        detail = "old password kept" if stored else "no password: invite or reset needed"
        report.add("users imported", f"user {email}: imported as {role.value} ({detail})")
    session.flush()


def _devices(
    source: Engine, session: Session, report: ImportReport, now: datetime
) -> dict[int, str]:
    """JABS device id -> our enclosure id."""
    mapping: dict[int, str] = {}
    for row in _rows(source, "SELECT id, name, location FROM device ORDER BY id"):
        jid, name = int(row["id"]), str(row["name"])
        host = name.strip().lower()
        registered = session.scalar(select(JabsEnclosure).where(JabsEnclosure.hostname == host))
        if registered is not None:  # imported before, or registered by an admin
            mapping[jid] = registered.enclosure_id
            report.add(
                "devices kept",
                f"device {name} (id {jid}): already enclosure {registered.enclosure_id} "
                f"(JABS id {registered.id})",
            )
            continue
        eid = ids.derive_enclosure_id(name)
        if session.get(Enclosure, eid) is not None or eid in mapping.values():
            # Never merge two histories: a name that derives to a known id gets its JABS id.
            eid = f"{eid[: 62 - len(str(jid))]}-{jid}"
        enclosures.register_enclosure(
            session,
            EnclosureCreate(id=eid, name=name[:200], location=row["location"] or None),
            now=now,
        )
        if session.get(JabsEnclosure, jid) is None:
            session.add(
                JabsEnclosure(
                    id=jid, enclosure_id=eid, hostname=host, registered_at=now, created_at=now
                )
            )
            shown = jid
        else:  # the JABS id went to another enclosure here before the import
            _fix_sequences(session)
            shown = ids.enclosure_ids(session, [eid])[eid]
            given = session.get(JabsEnclosure, shown)
            assert given is not None
            given.hostname, given.registered_at = host, now
        session.flush()
        mapping[jid] = eid
        moved = "" if shown == jid else f", JABS id now {shown}: {jid} was taken"
        report.add(
            "devices imported",
            f"device {name} (id {jid}) -> enclosure {eid} (legacy device{moved})",
        )
    return mapping


def _session_status(jabs_status: str, states: list[str]) -> str:
    if jabs_status != "COMPLETE":
        return SessionStatus.CANCELED.value
    if all(s in ("completed", "canceled") for s in states):
        return SessionStatus.COMPLETED.value
    return SessionStatus.COMPLETED_WITH_FAILURES.value


def _sessions(
    source: Engine,
    session: Session,
    report: ImportReport,
    devices: Mapping[int, str],
    now: datetime,
) -> None:
    parts: dict[int, list[Mapping[str, Any]]] = {}
    for row in _rows(
        source,
        "SELECT device_id, session_id, file_prefix, status, recording_time, message "
        "FROM session_device_status ORDER BY session_id, device_id",
    ):
        parts.setdefault(int(row["session_id"]), []).append(row)
    for row in _rows(
        source,
        "SELECT id, name, status, creation_time, archived, duration, file_prefix, "
        "fragment_hourly, apply_filter, target_fps FROM recording_session ORDER BY id",
    ):
        jid = int(row["id"])
        sid = f"jabs-{jid}"
        if session.get(RecordingSession, sid) is not None:
            report.add("sessions kept")
            continue
        status = _enum(row["status"])
        created = _when(row["creation_time"]) or now
        duration = max(1, int(row["duration"] or 1))
        end = created + timedelta(seconds=duration)
        in_progress = status == "IN_PROGRESS"
        rows = []
        for part in parts.get(jid, []):
            eid = devices.get(int(part["device_id"]))
            if eid is None:
                continue
            original = _enum(part["status"])
            state = _ROW_STATES.get(original, "failed")
            message = _clip(part["message"])
            if in_progress and original in ("PENDING", "RECORDING"):
                message = STOPPED_BY_MIGRATION
            rows.append((eid, part, state, message))
        rs = RecordingSession(
            id=sid,
            name=str(row["name"])[:200] or sid,
            status=_session_status(status, [r[2] for r in rows]),
            duration_s=duration,
            start_at=created,
            end_at=end,
            target_fps=row["target_fps"] if 1 <= int(row["target_fps"] or 0) <= 120 else None,
            fragment_hourly=bool(row["fragment_hourly"]),
            apply_filter=bool(row["apply_filter"]),
            created_at=created,
            started_at=created,
            finished_at=min(end, now),
            cancel_requested_at=now if in_progress else None,
            archived_at=now if row["archived"] else None,
            notes=f"{IMPORTED_REASON} (session {jid})",
        )
        session.add(rs)
        session.flush()
        for eid, part, state, message in rows:
            session.add(
                SessionEnclosure(
                    session_id=sid,
                    enclosure_id=eid,
                    file_prefix=_prefix(part["file_prefix"], row["file_prefix"]),
                    state=state,
                    message=message,
                    state_changed_at=min(end, now),
                    stopped_at=min(end, now),
                )
            )
            seconds = int(part["recording_time"] or 0)
            if seconds:
                session.add(
                    AgentEvent(
                        enclosure_id=eid,
                        event_id=f"jabs-import-{sid}",
                        kind=EventKind.RECORDING_STOPPED.value,
                        session_id=sid,
                        at=min(end, now),
                        received_at=now,
                        data={"reason": IMPORTED_REASON, "recorded_s": seconds},
                    )
                )
        if session.get(JabsSession, jid) is None:
            session.add(JabsSession(id=jid, session_id=sid, created_at=now))
        else:  # the JABS id went to another session here before the import
            _fix_sequences(session)
            ids.session_ids(session, [sid])
        session.flush()
        outcome = ", ".join(f"{eid} {state}" for eid, _p, state, _m in rows) or "no devices"
        note = " (was IN_PROGRESS: imported canceled)" if in_progress else ""
        report.add(
            "sessions imported", f"session {jid} {rs.name!r} -> {sid}: {rs.status}{note}; {outcome}"
        )


def _fix_sequences(session: Session) -> None:
    """PostgreSQL: ids given explicitly do not move the sequences; move them past the max."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite AUTOINCREMENT follows the largest id by itself
    for model in (JabsEnclosure, JabsSession):
        table = model.__tablename__
        top = session.scalar(select(func.max(model.id)))
        if top:
            session.execute(
                text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v)"),
                {"t": table, "v": top},
            )
