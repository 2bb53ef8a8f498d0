"""REST bodies of users: the user as shown, the admin list, invites, changes, own password."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from schemas.base import StrictModel
from schemas.enums import Role
from schemas.rest.common import Page, PageQuery, RestOut
from schemas.types import UtcDatetime

__all__ = [
    "DEFAULT_USER_PAGE_LIMIT",
    "MAX_EMAIL_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MAX_USER_ID",
    "MAX_USER_PAGE_LIMIT",
    "MIN_PASSWORD_LENGTH",
    "Email",
    "InviteRequest",
    "MePatch",
    "NewPassword",
    "PasswordChange",
    "PresentedPassword",
    "UserList",
    "UserListQuery",
    "UserOut",
    "UserPatch",
    "UserPath",
    "UserState",
]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything; this keeps one request cheap
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit (email-validator enforces it too)
MAX_USER_ID = 2**31 - 1  # users.id is a 32-bit integer on PostgreSQL
DEFAULT_USER_PAGE_LIMIT = 50
MAX_USER_PAGE_LIMIT = 200

Email = Annotated[EmailStr, Field(max_length=MAX_EMAIL_LENGTH)]
"""An email address (validated by email-validator; matched case-insensitively)."""

NewPassword = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]
"""A password being set: at least 8 characters and not one of the most common passwords."""

PresentedPassword = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
"""A password being checked (login, current password)."""

_SearchText = Annotated[
    str, StringConstraints(max_length=MAX_EMAIL_LENGTH, pattern=r"^[^\x00-\x1f\x7f]*$")
]


class UserState(StrEnum):
    """Where an account is in its life."""

    INVITED = "invited"  # invited by email, no password set yet
    ACTIVE = "active"
    DISABLED = "disabled"  # an administrator disabled it; its tokens stopped working


class UserOut(RestOut):
    """A user account as the API shows it (never the password hash)."""

    id: int = Field(description="User id.")
    email: str = Field(description="Email address (lower case); also the login name.")
    role: Role = Field(description="admin, operator or viewer.")
    state: UserState = Field(description="invited, active or disabled.")
    disabled: bool = Field(description="True when an administrator disabled the account.")
    alert_emails: bool = Field(description="The user opted in to alert emails.")
    created_at: UtcDatetime = Field(description="When the account was created (or invited).")
    last_login_at: UtcDatetime | None = Field(
        default=None, description="Last successful login (null: never)."
    )


class UserList(Page[UserOut]):
    """One page of users, ordered by id."""


class UserListQuery(PageQuery):
    """Filters of GET /api/users."""

    limit: int = Field(
        default=DEFAULT_USER_PAGE_LIMIT,
        ge=1,
        le=MAX_USER_PAGE_LIMIT,
        description="Users per page (1-200).",
    )
    role: Role | None = Field(default=None, description="Only users with this role.")
    disabled: bool | None = Field(default=None, description="Only disabled (or enabled) users.")
    q: _SearchText | None = Field(
        default=None, description="Only users whose email contains this text (any case)."
    )


class UserPath(StrictModel):
    id: int = Field(ge=1, le=MAX_USER_ID, description="User id.")


class InviteRequest(StrictModel):
    """Invite someone by email; they set their password through the emailed link."""

    email: Email = Field(description="Email address of the new user.")
    role: Role = Field(description="The role the user will have.")


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null (leave the field out to keep the value)")
    return value


class UserPatch(StrictModel):
    """Change another user's role or disable/enable them (admin). Give at least one field."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    role: Role | SkipJsonSchema[None] = Field(default=None, description="New role.")
    disabled: StrictBool | SkipJsonSchema[None] = Field(
        default=None,
        description="true disables the account and ends its sessions at once; false enables it.",
    )

    _no_nulls = field_validator("role", "disabled", mode="before")(_not_null)

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give role, disabled or both")
        return self


class MePatch(StrictModel):
    """Change your own preferences."""

    alert_emails: StrictBool = Field(
        description="Receive alert emails (enclosure lost, camera stalled)."
    )


class PasswordChange(StrictModel):
    """Change your own password; every other session of yours ends."""

    current_password: PresentedPassword = Field(description="Your current password.")
    new_password: NewPassword = Field(
        description="The new password: at least 8 characters, not a common password."
    )
