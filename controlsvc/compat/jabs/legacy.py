"""Registering original JABS device clients (legacy devices) as enclosures. No Flask.

The original heard anyone; here a heartbeat is accepted only from a registered device: by its
host name (the ``name`` it sends), from ``[JABS] heartbeat_networks`` or with its token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.compat.jabs import ids
from controlsvc.compat.jabs.gateway import token_hash
from controlsvc.domain.errors import Conflict, InvalidInput, NotFound
from controlsvc.store import enclosures
from controlsvc.store.db import utcnow
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.jabs import HOSTNAME_LENGTH, JabsEnclosure
from schemas.rest.enclosures import EnclosureCreate

__all__ = ["LegacyDevice", "list_legacy", "register_legacy", "unregister_legacy"]

TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class LegacyDevice:
    jabs_id: int
    hostname: str
    enclosure_id: str
    has_token: bool
    token: str | None = None  # only right after registering: shown once, stored hashed


def _hostname(name: str) -> str:
    host = name.strip().lower()
    if not host or len(host) > HOSTNAME_LENGTH or any(c.isspace() for c in host):
        raise InvalidInput(
            f"{name!r} is not a host name (1-{HOSTNAME_LENGTH} characters, no spaces)",
            field="name",
        )
    return host


def register_legacy(
    session: Session,
    name: str,
    *,
    enclosure_id: str | None = None,
    location: str | None = None,
    with_token: bool = True,
    now: datetime | None = None,
) -> LegacyDevice:
    """Register the device whose heartbeats carry ``name`` as an enclosure (its id derived
    from the name unless given; an existing enclosure is reused, e.g. an imported one); with
    ``with_token`` a new token replaces any earlier one."""
    now = now or utcnow()
    host = _hostname(name)
    eid = enclosure_id or ids.derive_enclosure_id(host)
    taken = session.scalar(select(JabsEnclosure).where(JabsEnclosure.hostname == host))
    if taken is not None and taken.enclosure_id != eid:
        raise Conflict(
            f"{host} is already registered as enclosure {taken.enclosure_id}", field="name"
        )
    enc = session.get(Enclosure, eid)
    if enc is None or enc.retired_at is not None:
        try:
            data = EnclosureCreate(id=eid, name=name.strip(), location=location)
        except ValidationError as exc:
            raise InvalidInput(exc.errors()[0]["msg"], field="enclosure_id") from None
        enc = enclosures.register_enclosure(session, data, now=now)
    elif location is not None:
        enc.location = location
    jid = ids.enclosure_ids(session, [eid])[eid]
    row = session.get(JabsEnclosure, jid)
    assert row is not None
    if row.hostname is not None and row.hostname != host:
        raise Conflict(f"enclosure {eid} is already the legacy device {row.hostname}", field="name")
    token = secrets.token_urlsafe(TOKEN_BYTES) if with_token else None
    row.hostname = host
    row.registered_at = row.registered_at or now
    if with_token:
        assert token is not None
        row.token_hash = token_hash(token)
    session.flush()
    return LegacyDevice(jid, host, eid, row.token_hash is not None, token)


def unregister_legacy(session: Session, name: str) -> LegacyDevice:
    """Stop hearing the device (its enclosure, history and JABS id stay)."""
    host = _hostname(name)
    row = session.scalar(select(JabsEnclosure).where(JabsEnclosure.hostname == host))
    if row is None:
        raise NotFound(f"no legacy device {host!r} is registered", field="name")
    device = LegacyDevice(row.id, host, row.enclosure_id, row.token_hash is not None)
    row.hostname = None
    row.token_hash = None
    row.registered_at = None
    session.flush()
    return device


def list_legacy(session: Session) -> list[LegacyDevice]:
    rows = session.scalars(
        select(JabsEnclosure).where(JabsEnclosure.hostname.is_not(None)).order_by(JabsEnclosure.id)
    )
    return [
        LegacyDevice(row.id, row.hostname or "", row.enclosure_id, row.token_hash is not None)
        for row in rows
    ]
