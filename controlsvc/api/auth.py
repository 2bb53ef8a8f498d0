"""Authentication: login, token refresh (rotating), logout, password reset, invite acceptance.

Emailed links (invite, reset) that are unknown, already used or expired all answer 404 with the
same message; a weak password answers 422 naming the field. A link is used up only when the
request succeeds (one transaction per request).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from controlsvc.api import mail as api_mail
from controlsvc.api import ratelimit, tokens
from controlsvc.api.errors import problem_responses
from controlsvc.api.web import db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.domain import mail as domain_mail
from controlsvc.store import users
from controlsvc.store.db import utcnow
from controlsvc.store.models.users import User
from schemas.enums import Role
from schemas.rest.auth import (
    LinkTokenPath,
    LoginRequest,
    LogoutRequest,
    PasswordResetAccepted,
    PasswordResetRequest,
    SetPasswordRequest,
    TokenResponse,
)
from schemas.rest.users import UserOut

__all__ = ["bp", "register", "token_response", "user_out"]

RESET_ACCEPTED = (
    "If an active account uses this address, a link to reset its password is on its way."
)
# Body problems every route with a JSON body can answer.
BODY_PROBLEMS = (400, 413, 415, 422)

bp = APIBlueprint(
    "auth",
    __name__,
    url_prefix="/api/auth",
    abp_tags=[Tag(name="auth", description="Log in and out, tokens, password reset, invites")],
)


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        role=Role(user.role),
        state=users.state_of(user),
        disabled=user.disabled,
        alert_emails=user.alert_emails,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def token_response(user: User, family: uuid.UUID | None = None) -> dict[str, Any]:
    pair = tokens.issue_tokens(user, family=family)
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        refresh_expires_in=pair.refresh_expires_in,
        user=user_out(user),
    ).model_dump(mode="json")


@bp.post(
    "/login",
    security=[],
    responses={200: TokenResponse, **problem_responses(401, 429, *BODY_PROBLEMS)},
)
def login(body: LoginRequest) -> Any:
    """Log in with email and password.

    Answers an access token (15 minutes) and a refresh token (30 days). Unknown email, wrong
    password, disabled or not yet activated account: the same 401. Attempts are limited per
    account and per client address (429 with Retry-After).
    """
    ratelimit.check_attempt("login", body.email)
    user = users.authenticate(db_session(), email=body.email, password=body.password, now=utcnow())
    return token_response(user)


@bp.post(
    "/refresh",
    security=tokens.JWT_SECURITY,
    responses={200: TokenResponse, **problem_responses(401)},
)
@tokens.require_token(refresh=True)
def refresh() -> Any:
    """New tokens for a refresh token (send the refresh token as the bearer token).

    The refresh token is rotated: the one sent is revoked, use the new one next time. Of
    parallel refreshes with one token exactly one succeeds (the others answer 401). A refresh
    token used again after its rotation revokes every token of its login (401; log in again).
    """
    user, family = tokens.rotate_current(utcnow())
    return token_response(user, family)


@bp.post(
    "/logout",
    security=tokens.JWT_SECURITY,
    responses={204: None, **problem_responses(401, *BODY_PROBLEMS)},
)
@tokens.require_token(any_type=True)
def logout(body: LogoutRequest) -> Any:
    """Revoke the bearer token (access or refresh); with {"refresh_token"} revoke that too."""
    now = utcnow()
    user = tokens.current_user()
    tokens.revoke_current(now)
    if body.refresh_token:
        tokens.revoke_encoded_refresh_token(body.refresh_token, user, now, field="refresh_token")
    users.purge_expired(db_session(), now)
    return "", 204


@bp.post(
    "/password-reset",
    security=[],
    responses={202: PasswordResetAccepted, **problem_responses(429, *BODY_PROBLEMS)},
)
def request_password_reset(body: PasswordResetRequest) -> Any:
    """Ask for a password-reset link by email.

    The answer is the same whether or not the address has an account; only active accounts get
    a mail. The link works once, within [SERVICE] email_token_hours (24 h).
    """
    ratelimit.check_attempt("password-reset", body.email)
    config = settings().service
    session = db_session()
    found = users.request_password_reset(
        session, email=body.email, now=utcnow(), hours=config.email_token_hours
    )
    if found is not None:
        user, token = found
        link = f"{config.public_url.rstrip('/')}/reset-password/{token}"
        api_mail.send_after_commit(
            session,
            domain_mail.reset_mail(to=user.email, link=link, hours=config.email_token_hours),
        )
    return PasswordResetAccepted(detail=RESET_ACCEPTED).model_dump(), 202


@bp.post(
    "/password-reset/<token>",
    security=[],
    responses={204: None, **problem_responses(404, *BODY_PROBLEMS)},
)
def reset_password(path: LinkTokenPath, body: SetPasswordRequest) -> Any:
    """Set a new password with the token of a reset link.

    Every token issued before stops working. An unknown, used or expired link answers 404.
    """
    users.reset_password(db_session(), token=path.token, password=body.password, now=utcnow())
    return "", 204


@bp.post(
    "/invites/<token>",
    security=[],
    responses={200: TokenResponse, **problem_responses(404, *BODY_PROBLEMS)},
)
def accept_invite(path: LinkTokenPath, body: SetPasswordRequest) -> Any:
    """Accept an invite: set the password, activate the account and log in.

    An unknown, used or expired invite link answers 404.
    """
    user = users.accept_invite(db_session(), token=path.token, password=body.password, now=utcnow())
    return token_response(user)


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    api_mail.init_app(app, app_settings)
    ratelimit.init_app(app, app_settings)
    app.register_api(bp)
