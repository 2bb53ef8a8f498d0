"""Users, their passwords, invites and password resets, and the token denylist.

Plain functions over a SQLAlchemy `Session`: they flush, never commit (the caller owns the
transaction), and raise `controlsvc.domain.errors` domain errors. No Flask here.

Emailed links carry a random token; only its SHA-256 is stored, it is single use and expires
after `hours`. Every refusal of a link (unknown, used, expired, or its user no longer fits) is
the same `NotFound`, so a link never tells more than "this link does not work".
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import validate_email
from pydantic_core import PydanticCustomError
from sqlalchemy import delete, event, exists, select
from sqlalchemy.orm import Session

from controlsvc.domain import passwords
from controlsvc.domain.errors import Conflict, InvalidInput, NotFound, Unauthorized
from controlsvc.store.bulk_rows import insert_rows
from controlsvc.store.models.users import EmailToken, RevokedToken, RevokedTokenFamily, User
from controlsvc.store.pagination import BAD_CURSOR, decode_cursor, encode_cursor
from schemas.enums import Role
from schemas.rest.users import MAX_EMAIL_LENGTH, MAX_USER_ID, UserState

log = logging.getLogger(__name__)

__all__ = [
    "BAD_LOGIN",
    "LINK_NOT_FOUND",
    "LinkPurpose",
    "RefreshTokenReused",
    "UserPage",
    "accept_invite",
    "alert_recipients",
    "authenticate",
    "change_password",
    "create_user",
    "get_user",
    "invite_user",
    "is_revoked",
    "list_users",
    "micros",
    "normalize_email",
    "purge_expired",
    "request_password_reset",
    "reset_password",
    "revoke_family",
    "revoke_token",
    "state_of",
    "token_user",
    "update_preferences",
    "update_user",
]

BAD_LOGIN = "invalid email or password"
LINK_NOT_FOUND = "this link is unknown, already used or expired; ask for a new one"
# Emailed tokens carry this many random bytes (43 URL-safe characters).
LINK_TOKEN_BYTES = 32
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RefreshTokenReused(Unauthorized):
    """A refresh token presented again after it was rotated (or logged out): someone else may
    hold a copy, so every token of its login (`family`) is to be revoked (OAuth 2.0 security
    BCP, refresh token rotation)."""

    def __init__(self, family: uuid.UUID) -> None:
        super().__init__(
            "this refresh token was already used, so every token of this login is revoked; "
            "log in again"
        )
        self.family = family


class LinkPurpose(StrEnum):
    INVITE = "invite"
    RESET = "reset"


# --- helpers -------------------------------------------------------------------------------


# session.info: called with the ids of the users whose tokens changed, once the session commits
# (the API's token cache and its broadcast; nothing is told about a rollback).
TOKENS_CHANGED_HOOK = "jaxmba.tokens_changed"
_TOKENS_CHANGED = "jaxmba.tokens_changed.pending"
TokensChangedHook = Callable[[frozenset[int]], None]


def tokens_changed(session: Session, user_id: int | None) -> None:
    """Record that what ``user_id``'s tokens may do changed; told to the session's hook (if any)
    once the transaction commits, forgotten if it rolls back."""
    if user_id is None or session.info.get(TOKENS_CHANGED_HOOK) is None:
        return
    pending: set[int] | None = session.info.get(_TOKENS_CHANGED)
    if pending is None:
        pending = session.info[_TOKENS_CHANGED] = set()
        if not event.contains(session, "after_commit", _tell_committed):
            event.listen(session, "after_commit", _tell_committed)
            event.listen(session, "after_rollback", _forget_rolled_back)
    pending.add(user_id)


def _tell_committed(session: Session) -> None:
    ids = session.info.pop(_TOKENS_CHANGED, None)
    hook: TokensChangedHook | None = session.info.get(TOKENS_CHANGED_HOOK)
    if ids and hook is not None:
        hook(frozenset(ids))


def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_TOKENS_CHANGED, None)


def normalize_email(email: str) -> str:
    """Validate an email address and return it in the stored form (lower case)."""
    email = email.strip()
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidInput(
            f"the email address is longer than {MAX_EMAIL_LENGTH} characters", field="email"
        )
    try:
        _name, normalized = validate_email(email)
    except PydanticCustomError as exc:
        raise InvalidInput(f"not a valid email address: {exc.message()}", field="email") from None
    return normalized.lower()


def _role(value: Role | str, field: str = "role") -> Role:
    try:
        return Role(value)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {value!r} (use one of {known})", field=field) from None


def state_of(user: User) -> UserState:
    if user.disabled:
        return UserState.DISABLED
    if not user.password_hash:
        return UserState.INVITED
    return UserState.ACTIVE


def _is_active(user: User) -> bool:
    return state_of(user) is UserState.ACTIVE


def _hash_link_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (token issue times are compared at this grain)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id) if 1 <= user_id <= MAX_USER_ID else None
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def _find_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def _new_link(
    session: Session,
    user: User,
    purpose: LinkPurpose,
    *,
    now: datetime,
    hours: int,
    created_by: User | None = None,
) -> str:
    """Replace the user's unused links of this purpose by a new one; return its token."""
    session.execute(
        delete(EmailToken).where(
            EmailToken.user_id == user.id,
            EmailToken.purpose == purpose.value,
            EmailToken.used_at.is_(None),
        )
    )
    token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
    session.add(
        EmailToken(
            token_hash=_hash_link_token(token),
            purpose=purpose.value,
            user_id=user.id,
            created_by_id=created_by.id if created_by else None,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    session.flush()
    return token


def _redeem_link(session: Session, token: str, purpose: LinkPurpose, now: datetime) -> User:
    """The user of a valid, unused, unexpired link; the link is marked used (flush pending)."""
    row = session.scalar(
        select(EmailToken)
        .where(
            EmailToken.token_hash == _hash_link_token(token),
            EmailToken.purpose == purpose.value,
        )
        .with_for_update()
    )
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise NotFound(LINK_NOT_FOUND)
    user = session.get(User, row.user_id)
    wanted = UserState.INVITED if purpose is LinkPurpose.INVITE else UserState.ACTIVE
    if user is None or state_of(user) is not wanted:
        raise NotFound(LINK_NOT_FOUND)
    row.used_at = now
    return user


# --- accounts ------------------------------------------------------------------------------


def create_user(session: Session, *, email: str, password: str, role: Role | str) -> User:
    """Create an active user with a password (the CLI's `create_admin`)."""
    address = normalize_email(email)
    chosen = _role(role)
    passwords.check_policy(password)
    if _find_by_email(session, address) is not None:
        raise Conflict(f"a user with the email {address} already exists", field="email")
    user = User(email=address, password_hash=passwords.hash_password(password), role=chosen.value)
    session.add(user)
    session.flush()
    log.info("created user %s (%s)", address, chosen.value)
    return user


def invite_user(
    session: Session,
    *,
    email: str,
    role: Role | str,
    invited_by: User | None,
    now: datetime,
    hours: int,
) -> tuple[User, str, bool]:
    """Invite a new user (or send a still-invited one a fresh link, the old one stops working).

    Returns (user, link token, created). An active or disabled account is a `Conflict`.
    """
    address = normalize_email(email)
    chosen = _role(role)
    user = _find_by_email(session, address)
    created = user is None
    if user is None:
        user = User(email=address, password_hash="", role=chosen.value, created_at=now)
        session.add(user)
        session.flush()
    elif state_of(user) is UserState.INVITED:
        user.role = chosen.value
    else:
        raise Conflict(
            f"a user with the email {address} already exists ({state_of(user).value})",
            field="email",
        )
    token = _new_link(
        session, user, LinkPurpose.INVITE, now=now, hours=hours, created_by=invited_by
    )
    log.info("invited %s as %s (%s)", address, chosen.value, "new" if created else "re-sent")
    return user, token, created


def accept_invite(session: Session, *, token: str, password: str, now: datetime) -> User:
    user = _redeem_link(session, token, LinkPurpose.INVITE, now)
    passwords.check_policy(password)
    user.password_hash = passwords.hash_password(password)
    user.tokens_valid_after = now
    user.last_login_at = now
    session.flush()
    tokens_changed(session, user.id)
    log.info("user %s accepted the invite", user.email)
    return user


def authenticate(session: Session, *, email: str, password: str, now: datetime) -> User:
    """The active user with these credentials, else Unauthorized with one generic message.

    Unknown, invited and disabled accounts take as long to refuse as a wrong password. A hash
    made with older argon2 parameters is replaced by one with the current parameters.
    """
    user = _find_by_email(session, email)
    if user is None or not user.password_hash:
        passwords.waste_time(password)
        raise Unauthorized(BAD_LOGIN)
    if not passwords.verify_password(user.password_hash, password) or user.disabled:
        raise Unauthorized(BAD_LOGIN)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
        log.info("rehashed the password of %s with the current parameters", user.email)
    user.last_login_at = now
    session.flush()
    return user


def change_password(
    session: Session, user: User, *, current_password: str, new_password: str, now: datetime
) -> User:
    """Change the own password; tokens issued before now stop working."""
    if not passwords.verify_password(user.password_hash, current_password):
        raise InvalidInput("the current password is not correct", field="current_password")
    passwords.check_policy(new_password, field="new_password")
    user.password_hash = passwords.hash_password(new_password)
    user.tokens_valid_after = now
    session.execute(
        delete(EmailToken).where(
            EmailToken.user_id == user.id,
            EmailToken.purpose == LinkPurpose.RESET.value,
            EmailToken.used_at.is_(None),
        )
    )
    session.flush()
    tokens_changed(session, user.id)
    log.info("user %s changed their password", user.email)
    return user


def request_password_reset(
    session: Session, *, email: str, now: datetime, hours: int
) -> tuple[User, str] | None:
    """A reset link for an active user; None (and no trace) for anyone else."""
    user = _find_by_email(session, email)
    if user is None or not _is_active(user):
        log.info("password reset asked for an address without an active account")
        return None
    token = _new_link(session, user, LinkPurpose.RESET, now=now, hours=hours)
    log.info("password reset link made for %s", user.email)
    return user, token


def reset_password(session: Session, *, token: str, password: str, now: datetime) -> User:
    user = _redeem_link(session, token, LinkPurpose.RESET, now)
    passwords.check_policy(password)
    user.password_hash = passwords.hash_password(password)
    user.tokens_valid_after = now
    session.flush()
    tokens_changed(session, user.id)
    log.info("user %s reset their password", user.email)
    return user


def update_preferences(session: Session, user: User, *, alert_emails: bool) -> User:
    user.alert_emails = alert_emails
    session.flush()
    return user


def _other_active_admins(session: Session, user: User) -> int:
    # Lock the admin rows (PostgreSQL) so two admins cannot demote each other at once.
    rows = session.scalars(
        select(User.id)
        .where(
            User.role == Role.ADMIN.value,
            User.disabled.is_(False),
            User.password_hash != "",
            User.id != user.id,
        )
        .with_for_update()
    ).all()
    return len(rows)


def update_user(
    session: Session,
    target_id: int,
    *,
    role: Role | str | None = None,
    disabled: bool | None = None,
    now: datetime,
) -> User:
    """Change a user's role and/or disabled flag (admin). Disabling ends their tokens at once.

    The last active administrator can be neither demoted nor disabled (`Conflict`).
    """
    user = get_user(session, target_id)
    new_role = _role(role) if role is not None else Role(user.role)
    loses_admin = user.role == Role.ADMIN.value and new_role is not Role.ADMIN
    gets_disabled = bool(disabled) and not user.disabled
    if (
        (loses_admin or gets_disabled)
        and _is_active(user)
        and user.role == Role.ADMIN.value
        and _other_active_admins(session, user) == 0
    ):
        raise Conflict(
            "this is the last active administrator: make someone else an administrator first",
            field="role" if loses_admin else "disabled",
        )
    changed = user.role != new_role.value
    user.role = new_role.value
    if disabled is not None and disabled != user.disabled:
        user.disabled = disabled
        user.tokens_valid_after = now
        changed = True
        log.info("user %s %s", user.email, "disabled" if disabled else "enabled")
    session.flush()
    if changed:
        tokens_changed(session, user.id)
    return user


# --- listing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserPage:
    items: Sequence[User]
    next_cursor: str | None


def _cursor_id(cursor: str) -> int:
    after = decode_cursor(cursor, "id")["id"]
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_USER_ID:
        raise InvalidInput(BAD_CURSOR, field="cursor")
    return after


def list_users(
    session: Session,
    *,
    limit: int,
    cursor: str | None = None,
    role: Role | str | None = None,
    disabled: bool | None = None,
    q: str | None = None,
) -> UserPage:
    """One page of users ordered by id, with filters; `next_cursor` is None on the last page."""
    query = select(User).order_by(User.id).limit(limit + 1)
    if cursor:
        query = query.where(User.id > _cursor_id(cursor))
    if role is not None:
        query = query.where(User.role == _role(role).value)
    if disabled is not None:
        query = query.where(User.disabled.is_(disabled))
    if q:
        query = query.where(User.email.contains(q.strip().lower(), autoescape=True))
    rows = session.scalars(query).all()
    items = rows[:limit]
    more = len(rows) > limit
    return UserPage(items=items, next_cursor=encode_cursor({"id": items[-1].id}) if more else None)


def alert_recipients(session: Session) -> list[str]:
    """Emails of the active users who opted in to alert mails."""
    rows = session.scalars(
        select(User.email)
        .where(User.alert_emails.is_(True), User.disabled.is_(False), User.password_hash != "")
        .order_by(User.id)
    )
    return list(rows)


# --- tokens --------------------------------------------------------------------------------


def token_user(
    session: Session,
    *,
    subject: object,
    jti: object,
    issued_at_us: int,
    family: object = None,
    refresh: bool = False,
) -> User:
    """The user a JWT speaks for, if the token still counts; else Unauthorized saying why.

    A token no longer counts when it was revoked (logout, refresh rotation), its family was
    revoked (one of its refresh tokens was used twice), its user is gone or disabled, or it was
    issued before the user's `tokens_valid_after` (password change). A revoked `refresh` token
    raises `RefreshTokenReused`: the caller revokes its family.
    """
    try:
        user_id = int(str(subject))
        token_id = uuid.UUID(str(jti))
        family_id = uuid.UUID(str(family)) if family is not None else token_id
    except ValueError:
        raise Unauthorized("the token is not one of ours") from None
    user: User | None = None
    revoked = family_revoked = False
    if 1 <= user_id <= MAX_USER_ID:
        # Every request checks its token: the user and both denylists in one query.
        row = session.execute(
            select(
                User,
                exists().where(RevokedToken.jti == token_id),
                exists().where(RevokedTokenFamily.family == family_id),
            ).where(User.id == user_id)
        ).one_or_none()
        if row is not None:
            user, revoked, family_revoked = row
    if user is None:
        revoked = is_revoked(session, token_id)
    if family_revoked:
        raise Unauthorized(
            "every token of this login was revoked because one of its refresh tokens was used "
            "twice; log in again"
        )
    if revoked:
        if refresh and user is not None:
            raise RefreshTokenReused(family_id)
        raise Unauthorized("the token has been revoked")
    if user is None or not user.password_hash:
        raise Unauthorized("the token's user does not exist")
    if user.disabled:
        raise Unauthorized("the account is disabled")
    if issued_at_us < micros(user.tokens_valid_after):
        raise Unauthorized("the token was issued before a password change; log in again")
    return user


def is_revoked(session: Session, jti: uuid.UUID) -> bool:
    return session.get(RevokedToken, jti) is not None


def revoke_token(
    session: Session, *, jti: uuid.UUID, user_id: int | None, expires_at: datetime, now: datetime
) -> bool:
    """Put a token id on the denylist until the token would expire; False if already there.

    Atomic: of several requests revoking one token at once (a refresh token rotated twice in
    parallel) exactly one gets True; the others wait for it and get False, never an error.
    """
    if expires_at <= now:
        return False
    row = {"jti": jti, "user_id": user_id, "revoked_at": now, "expires_at": expires_at}
    inserted = insert_rows(session.connection(), RevokedToken.__table__, [row]) == 1  # type: ignore[arg-type]
    if inserted:
        tokens_changed(session, user_id)
    return inserted


def revoke_family(
    session: Session,
    *,
    family: uuid.UUID,
    user_id: int | None,
    expires_at: datetime,
    now: datetime,
) -> bool:
    """Revoke every token of a login's family until `expires_at`; False if already revoked."""
    row = {"family": family, "user_id": user_id, "revoked_at": now, "expires_at": expires_at}
    inserted = insert_rows(session.connection(), RevokedTokenFamily.__table__, [row]) == 1  # type: ignore[arg-type]
    if inserted:
        tokens_changed(session, user_id)
        log.warning(
            "a refresh token of user %s was used twice: revoked every token of its login %s",
            user_id,
            family,
        )
    return inserted


def purge_expired(session: Session, now: datetime) -> int:
    """Delete denylist entries of expired tokens and expired emailed links; return how many."""
    results = [
        session.execute(delete(table).where(table.expires_at <= now))
        for table in (RevokedToken, RevokedTokenFamily, EmailToken)
    ]
    count = sum(int(getattr(result, "rowcount", 0) or 0) for result in results)
    if count:
        log.info("purged %d expired token rows", count)
    return count
