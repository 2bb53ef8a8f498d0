"""All tables. Importing this package registers every model on `Base.metadata` (for Alembic)."""

from __future__ import annotations

from controlsvc.db import Base
from controlsvc.models.users import EmailToken, RevokedToken, User

__all__ = ["Base", "EmailToken", "RevokedToken", "User"]
