"""Users: the own account (/me), and the administration of everyone's (admin only)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from controlsvc.api import mail as api_mail
from controlsvc.api import ratelimit, tokens
from controlsvc.api.auth import BODY_PROBLEMS, token_response, user_out
from controlsvc.api.errors import problem_responses
from controlsvc.api.web import db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.domain import mail as domain_mail
from controlsvc.domain.errors import Forbidden
from controlsvc.store import users
from controlsvc.store.db import utcnow
from schemas.enums import Role
from schemas.rest.auth import TokenResponse
from schemas.rest.users import (
    InviteRequest,
    MePatch,
    PasswordChange,
    UserList,
    UserListQuery,
    UserOut,
    UserPatch,
    UserPath,
)

__all__ = ["bp", "register"]

bp = APIBlueprint(
    "users",
    __name__,
    url_prefix="/api/users",
    abp_tags=[Tag(name="users", description="Own account; user administration (admin)")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401),
)


@bp.get("/me", responses={200: UserOut})
@tokens.require_role()
def get_me() -> Any:
    """The logged-in user."""
    return user_out(tokens.current_user()).model_dump(mode="json")


@bp.patch("/me", responses={200: UserOut, **problem_responses(*BODY_PROBLEMS)})
@tokens.require_role()
def patch_me(body: MePatch) -> Any:
    """Change own preferences (opt in or out of alert emails)."""
    user = users.update_preferences(
        db_session(), tokens.current_user(), alert_emails=body.alert_emails
    )
    return user_out(user).model_dump(mode="json")


@bp.put(
    "/me/password",
    responses={200: TokenResponse, **problem_responses(429, *BODY_PROBLEMS)},
)
@tokens.require_role()
def change_password(body: PasswordChange) -> Any:
    """Change own password.

    Every token issued before stops working, on every device; the answer carries new tokens so
    this client stays logged in. A wrong current password is a 422 on current_password.
    """
    user = tokens.current_user()
    ratelimit.check_attempt("password-change", user.email)
    users.change_password(
        db_session(),
        user,
        current_password=body.current_password,
        new_password=body.new_password,
        now=utcnow(),
    )
    return token_response(user)


@bp.get("", responses={200: UserList, **problem_responses(403, 422)})
@tokens.require_role(Role.ADMIN)
def list_users(query: UserListQuery) -> Any:
    """List users by id, a page at a time (admin); filter by role, disabled, email text."""
    page = users.list_users(
        db_session(),
        limit=query.limit,
        cursor=query.cursor,
        role=query.role,
        disabled=query.disabled,
        q=query.q,
    )
    return UserList(
        items=[user_out(user) for user in page.items], next_cursor=page.next_cursor
    ).model_dump(mode="json")


@bp.post(
    "/invites",
    responses={
        201: UserOut,
        200: UserOut,
        **problem_responses(403, 409, *BODY_PROBLEMS),
    },
)
@tokens.require_role(Role.ADMIN)
def invite(body: InviteRequest) -> Any:
    """Invite a user by email (admin): 201 with the new user in state "invited".

    Inviting an address that is still invited sends a fresh link (the old one stops working)
    and answers 200; an active or disabled account is a 409.
    """
    config = settings().service
    session = db_session()
    admin = tokens.current_user()
    user, token, created = users.invite_user(
        session,
        email=body.email,
        role=body.role,
        invited_by=admin,
        now=utcnow(),
        hours=config.email_token_hours,
    )
    link = f"{config.public_url.rstrip('/')}/invite/{token}"
    api_mail.send_after_commit(
        session,
        domain_mail.invite_mail(
            to=user.email,
            link=link,
            role=user.role,
            invited_by=admin.email,
            hours=config.email_token_hours,
        ),
    )
    return user_out(user).model_dump(mode="json"), (201 if created else 200)


@bp.get("/<int:id>", responses={200: UserOut, **problem_responses(403, 404, 422)})
@tokens.require_role()
def get_user(path: UserPath) -> Any:
    """One user (admin, or the user themselves)."""
    me = tokens.current_user()
    if me.id != path.id and me.role != Role.ADMIN.value:
        raise Forbidden("only an admin can see other users")
    return user_out(users.get_user(db_session(), path.id)).model_dump(mode="json")


@bp.patch(
    "/<int:id>",
    responses={200: UserOut, **problem_responses(403, 404, 409, *BODY_PROBLEMS)},
)
@tokens.require_role(Role.ADMIN)
def patch_user(path: UserPath, body: UserPatch) -> Any:
    """Change a user's role or disable/enable them (admin).

    Disabling ends the user's sessions at once. The last active admin can be neither demoted
    nor disabled (409).
    """
    user = users.update_user(
        db_session(), path.id, role=body.role, disabled=body.disabled, now=utcnow()
    )
    return user_out(user).model_dump(mode="json")


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    api_mail.init_app(app, app_settings)
    ratelimit.init_app(app, app_settings)
    app.register_api(bp)
