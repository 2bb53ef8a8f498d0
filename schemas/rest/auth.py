"""REST bodies of authentication: login, tokens, logout, password reset, invite acceptance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.base import StrictModel
from schemas.rest.common import RestOut
from schemas.rest.users import Email, NewPassword, PresentedPassword, UserOut

__all__ = [
    "MAX_LINK_TOKEN_LENGTH",
    "LinkTokenPath",
    "LoginRequest",
    "LogoutRequest",
    "PasswordResetAccepted",
    "PasswordResetRequest",
    "SetPasswordRequest",
    "TokenResponse",
]

MAX_LINK_TOKEN_LENGTH = 128  # emailed tokens are 43 characters; anything longer is not ours
MAX_JWT_LENGTH = 4096


class LoginRequest(StrictModel):
    email: Email = Field(description="The account's email address (any case).")
    password: PresentedPassword = Field(description="The account's password.")


class TokenResponse(RestOut):
    """Tokens for `Authorization: Bearer <token>`: the access token for every call, the
    refresh token only for POST /api/auth/refresh (which rotates it)."""

    access_token: str = Field(description="JWT for the API; expires after `expires_in` seconds.")
    refresh_token: str = Field(
        description="JWT that gets new tokens at POST /api/auth/refresh; single use."
    )
    token_type: Literal["Bearer"] = Field(default="Bearer", description="Always Bearer.")
    expires_in: int = Field(description="Lifetime of the access token in seconds.")
    refresh_expires_in: int = Field(description="Lifetime of the refresh token in seconds.")
    user: UserOut = Field(description="The logged-in user.")


class LogoutRequest(StrictModel):
    """Optional body of POST /api/auth/logout."""

    # flask-openapi3 reads `openapi_extra`: the body may be left out entirely.
    model_config = {"openapi_extra": {"required": False}}  # type: ignore[typeddict-unknown-key]

    refresh_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_JWT_LENGTH,
        description="Also revoke this refresh token (it must be yours).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_body_is_empty(cls, data: Any) -> Any:
        return {} if data is None else data


class PasswordResetRequest(StrictModel):
    email: Email = Field(description="Where to send the reset link.")


class PasswordResetAccepted(BaseModel):
    """The same answer whether or not the email belongs to an account."""

    detail: str = Field(description="What happens next.")


class SetPasswordRequest(StrictModel):
    """The password chosen through an emailed link (invite or reset)."""

    password: NewPassword = Field(
        description="The new password: at least 8 characters, not a common password."
    )


class LinkTokenPath(StrictModel):
    token: str = Field(
        min_length=1,
        max_length=MAX_LINK_TOKEN_LENGTH,
        description="The token from the emailed link.",
    )
