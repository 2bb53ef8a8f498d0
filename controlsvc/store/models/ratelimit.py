"""Attempt counters of the rate limits, shared by every worker through the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from controlsvc.store.db import Base


class AttemptCount(Base):
    """Attempts counted under one key (scope, kind, account or address) in one fixed window; the
    sliding count of controlsvc/api/ratelimit.py weighs it with the window before."""

    __tablename__ = "attempt_counts"

    # "login:address:203.0.113.7"; hashed when longer than the column (see ratelimit.py).
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    # The window's number: seconds since the epoch // the window's length.
    window_index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hits: Mapped[int]
    # When the next window ends: the row is useless after it and purged.
    expires_at: Mapped[datetime] = mapped_column(index=True)
