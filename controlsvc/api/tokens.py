"""JWTs (flask-jwt-extended): issuing, the checks on every request, `require_role`.

Every token carries `sub` (the user id), `jti` (a uuid), `iat_us` (issue time in microseconds;
`iat` has only whole seconds, too coarse to tell a token issued just before a password change
from one issued just after) and `fam` (its family: a uuid fixed at login and kept by every
refresh). On every request a token must not be on the denylist (`revoked_tokens`) nor its
family (`revoked_token_families`), its user must exist, be active, and not have changed password
(or been disabled) after the token was issued. Every refusal is a 401 problem+json; a wrong role
is 403.

Refresh tokens rotate: a refresh revokes the token it was given, atomically (of parallel
refreshes with one token exactly one succeeds, the others get 401). A refresh token presented
after it was revoked means a copy exists: the whole family is revoked (OAuth 2.0 security BCP).

A passed access-token check is kept for a few seconds (``controlsvc.api.token_cache``): a
request then knows its user's id and role without the database, and ``current_user()`` reads
the user only for the views that need the whole record. Every commit that changes what a user's
tokens may do empties that user's checks here and, over MQTT, in the other API processes.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar, cast

from flask import Flask, Response, abort, current_app, g
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    decode_token,
    get_current_user,
    get_jwt,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError

from controlsvc.api import event_feed
from controlsvc.api.errors import problem
from controlsvc.api.token_cache import EXTENSION_KEY as TOKEN_CACHE_KEY
from controlsvc.api.token_cache import Identity, TokenCache
from controlsvc.api.validation import validated
from controlsvc.api.web import SESSION_INFO_KEY, database, db_session
from controlsvc.config.settings import Settings
from controlsvc.domain.errors import Forbidden, InvalidInput, Unauthorized
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.store import users
from controlsvc.store.db import utcnow
from controlsvc.store.models.users import User
from schemas.enums import Role
from schemas.messages import MAX_TOKEN_USERS, TokensChanged
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = [
    "FAMILY_CLAIM",
    "ISSUED_US_CLAIM",
    "JWT_SECURITY",
    "TokenPair",
    "current_identity",
    "current_user",
    "init_app",
    "issue_tokens",
    "require_role",
    "require_token",
    "revoke_current",
    "revoke_encoded_refresh_token",
    "rotate_current",
]

ISSUED_US_CLAIM = "iat_us"
FAMILY_CLAIM = "fam"
# The OpenAPI security requirement of every route that needs a token ("jwt" is declared in app.py).
JWT_SECURITY: list[dict[str, list[str]]] = [{"jwt": []}]
_CHECKED_KEY = "_jaxmba_token_user"
_REASON_KEY = "_jaxmba_token_refusal"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int


def _lifetimes(settings: Settings) -> tuple[timedelta, timedelta]:
    return (
        timedelta(minutes=settings.service.access_token_minutes),
        timedelta(days=settings.service.refresh_token_days),
    )


def issue_tokens(
    user: User,
    extra_claims: Mapping[str, Any] | None = None,
    *,
    family: uuid.UUID | None = None,
) -> TokenPair:
    """A new access and refresh token for `user` (inside an app context); `extra_claims` go
    into both. `family` is that of the refresh token being rotated; None starts a new one (a
    login)."""
    access_life = cast(timedelta, current_app.config["JWT_ACCESS_TOKEN_EXPIRES"])
    refresh_life = cast(timedelta, current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])
    claims = {
        **(extra_claims or {}),
        ISSUED_US_CLAIM: users.micros(utcnow()),
        FAMILY_CLAIM: str(family or uuid.uuid4()),
        "role": user.role,
    }
    return TokenPair(
        access_token=create_access_token(str(user.id), additional_claims=claims),
        refresh_token=create_refresh_token(str(user.id), additional_claims=claims),
        expires_in=int(access_life.total_seconds()),
        refresh_expires_in=int(refresh_life.total_seconds()),
    )


def _issued_us(payload: Mapping[str, Any]) -> int:
    value = payload.get(ISSUED_US_CLAIM)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(payload.get("iat", 0)) * 1_000_000


def _family(payload: Mapping[str, Any]) -> object:
    # Tokens issued before families existed are each a family of their own.
    return payload.get(FAMILY_CLAIM) or payload.get("jti")


def _revoke_family(exc: users.RefreshTokenReused, subject: object) -> None:
    """Revoke the family of a reused refresh token in a transaction of its own: the request
    answers 401, which rolls its own transaction back."""
    db_session().rollback()
    now = utcnow()
    refresh_life = cast(timedelta, current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])
    with database().session() as session:
        session.info.update(current_app.extensions.get(SESSION_INFO_KEY, {}))  # tell the caches
        # The family's newest refresh token was issued by now: it expires by now + its life.
        users.revoke_family(
            session,
            family=exc.family,
            user_id=int(str(subject)),
            expires_at=now + refresh_life,
            now=now,
        )


def _check(payload: Mapping[str, Any]) -> User | Identity | None:
    """The token's user (or, from the cache, who it is), or None with the reason kept for the
    401 (once per request)."""
    session = db_session()
    jti = payload.get("jti")
    cached = g.get(_CHECKED_KEY)
    # Valid for this request's session only (a read retried on a fresh one checks again).
    if cached is not None and cached[0] == jti and cached[2] is session:
        return cast(User | Identity | None, cached[1])
    cache = _cache_for(payload)
    key = _token_key(jti) if cache is not None else None
    if cache is not None and key is not None:
        hit = cache.get(key)
        if hit is not None:
            setattr(g, _CHECKED_KEY, (jti, hit, session))
            return hit
        generation = cache.generation  # before the read: a change meanwhile keeps it out
    try:
        user: User | None = users.token_user(
            session,
            subject=payload.get("sub"),
            jti=jti,
            issued_at_us=_issued_us(payload),
            family=_family(payload),
            refresh=payload.get("type") == "refresh",
        )
    except users.RefreshTokenReused as exc:
        user = None
        _revoke_family(exc, payload.get("sub"))
        setattr(g, _REASON_KEY, exc.detail)
    except Unauthorized as exc:
        user = None
        setattr(g, _REASON_KEY, exc.detail)
    if user is not None and cache is not None and key is not None:
        cache.put(key, Identity(user.id, user.role), generation)
    setattr(g, _CHECKED_KEY, (jti, user, session))
    return user


def _token_key(jti: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(jti))
    except ValueError:
        return None


def _cache_for(payload: Mapping[str, Any]) -> TokenCache | None:
    """The app's token cache for an access token (refresh tokens always read the database);
    None when it is off. Starts the event feed, whose subscription makes the cache live."""
    if payload.get("type") != "access":
        return None
    cache = cast("TokenCache | None", current_app.extensions.get(TOKEN_CACHE_KEY))
    if cache is None or not cache.enabled:
        return None
    if not cache.live:
        try:
            event_feed.get_feed(current_app)
        except Exception as exc:  # the cache is an optimisation: check the database
            log.debug("token cache waits for the event feed: %s", exc)
    return cache


def _tokens_changed(app: Flask, cache: TokenCache, topic: str, user_ids: frozenset[int]) -> None:
    """After a commit that changed these users' tokens: forget their checks here, and tell the
    other API processes. Never raises (the commit is done); a process that misses the message
    drops its checks when they expire."""
    cache.users_changed(user_ids)
    if not cache.enabled:
        return
    publisher = app.extensions.get(PUBLISHER_KEY)
    if publisher is None:
        return
    ordered = sorted(user_ids)
    for start in range(0, len(ordered), MAX_TOKEN_USERS):
        chunk = ordered[start : start + MAX_TOKEN_USERS]
        try:
            payload = TokensChanged(users=chunk).model_dump_json().encode()
            publisher.publish(topic, payload, qos=1)
        except Exception as exc:
            log.warning(
                "could not tell the other API processes that the tokens of user(s) %s changed "
                "(%s): their cached checks end within %g s",
                ", ".join(map(str, chunk)),
                exc,
                cache.ttl_s,
            )


def _unauthorized(detail: str, *, error: str | None = "invalid_token") -> Response:
    challenge = 'Bearer realm="jaxmba"'
    if error:
        challenge += f', error="{error}"'
    return problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


def init_app(app: Flask, settings: Settings) -> JWTManager:
    """Configure flask-jwt-extended on `app` (idempotent: both auth and users call it)."""
    existing = app.extensions.get("flask-jwt-extended")
    if isinstance(existing, JWTManager):
        return existing
    access_life, refresh_life = _lifetimes(settings)
    app.config.update(
        JWT_ACCESS_TOKEN_EXPIRES=access_life,
        JWT_REFRESH_TOKEN_EXPIRES=refresh_life,
        JWT_TOKEN_LOCATION=["headers"],
        JWT_HEADER_NAME="Authorization",
        JWT_HEADER_TYPE="Bearer",
        JWT_ALGORITHM="HS256",
        # Tokens travel only in the Authorization header: no CSRF claim needed.
        JWT_COOKIE_CSRF_PROTECT=False,
    )
    jwt = JWTManager(app)
    cache = TokenCache(settings.service.token_check_cache_s)
    app.extensions[TOKEN_CACHE_KEY] = cache
    topic = Topics(settings.mqtt.topic_prefix).service_auth()
    app.extensions.setdefault(SESSION_INFO_KEY, {})[users.TOKENS_CHANGED_HOOK] = functools.partial(
        _tokens_changed, app, cache, topic
    )

    @jwt.token_in_blocklist_loader
    def _refused(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return _check(payload) is None

    @jwt.user_lookup_loader
    def _user(_header: dict[str, Any], payload: dict[str, Any]) -> User | Identity | None:
        return _check(payload)

    @jwt.revoked_token_loader
    def _revoked(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized(g.get(_REASON_KEY) or "the token has been revoked")

    @jwt.user_lookup_error_loader
    def _no_user(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized(g.get(_REASON_KEY) or "the token's user does not exist")

    @jwt.expired_token_loader
    def _expired(_header: dict[str, Any], payload: dict[str, Any]) -> Response:
        if payload.get("type") == "refresh":
            return _unauthorized("the refresh token has expired; log in again")
        return _unauthorized("the access token has expired; refresh it at /api/auth/refresh")

    @jwt.invalid_token_loader
    def _invalid(reason: str) -> Response:
        return _unauthorized(f"the token is invalid: {reason}")

    @jwt.unauthorized_loader
    def _missing(reason: str) -> Response:
        return _unauthorized(
            f"this needs 'Authorization: Bearer <access token>' ({reason})", error=None
        )

    @jwt.needs_fresh_token_loader
    def _not_fresh(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("this needs a token from a fresh login")

    @jwt.token_verification_failed_loader
    def _failed(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("the token's claims were refused")

    return jwt


def current_identity() -> Identity:
    """Who the verified token of this request speaks for (no database read)."""
    found = get_current_user()
    if isinstance(found, Identity):
        return found
    if isinstance(found, User):
        return Identity(found.id, found.role)
    raise Unauthorized("no verified token in this request")


def current_user() -> User:
    """The user of the verified token of this request (read, if the check came from the
    cache)."""
    found = get_current_user()
    if isinstance(found, User):
        return found
    identity = current_identity()
    user = db_session().get(User, identity.user_id)
    if user is None:
        raise Unauthorized("the token's user does not exist")
    return user


def require_token(
    *, refresh: bool = False, any_type: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Verify the bearer token before the request is validated (401 first, then 422).

    `refresh=True` wants a refresh token; `any_type=True` takes either kind.
    """

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        # Validate the request after the token is checked (flask-openapi3 then leaves it).
        checked = validated(view)

        @functools.wraps(checked)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            verify_jwt_in_request(refresh=refresh, verify_type=not any_type)
            return checked(*args, **kwargs)

        return wrapper

    return decorator


def require_role(*roles: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """An access token whose (current) user has one of `roles` (any role when none are given).

    No, bad, expired or revoked token: 401. A valid token without the role: 403.
    """
    allowed = frozenset(role.value for role in roles)

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        checked = validated(view)

        @functools.wraps(checked)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            verify_jwt_in_request()
            role = current_identity().role
            if allowed and role not in allowed:
                needed = " or ".join(sorted(allowed))
                raise Forbidden(f"this needs the role {needed} (you are {role})")
            return checked(*args, **kwargs)

        return wrapper

    return decorator


def _expiry(payload: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(payload["exp"]), UTC)


def revoke_current(now: datetime) -> Mapping[str, Any]:
    """Put the token of this request on the denylist; return its claims."""
    payload = get_jwt()
    user = current_user()
    users.revoke_token(
        db_session(),
        jti=uuid.UUID(str(payload["jti"])),
        user_id=user.id,
        expires_at=_expiry(payload),
        now=now,
    )
    return payload


def rotate_current(now: datetime) -> tuple[User, uuid.UUID]:
    """Revoke this request's refresh token; its user and family, to issue the next tokens.

    Of parallel refreshes with one token exactly one gets here; the others get 401.
    """
    payload = get_jwt()
    user = current_user()
    claimed = users.revoke_token(
        db_session(),
        jti=uuid.UUID(str(payload["jti"])),
        user_id=user.id,
        expires_at=_expiry(payload),
        now=now,
    )
    if not claimed:
        abort(
            _unauthorized(
                "this refresh token was used by another request at the same moment; "
                "use the tokens that request received"
            )
        )
    return user, uuid.UUID(str(_family(payload)))


def revoke_encoded_refresh_token(token: str, user: User, now: datetime, *, field: str) -> None:
    """Revoke a refresh token given in a body; it must be a valid refresh token of `user`.

    An expired one needs nothing (it cannot be used anyway).
    """
    try:
        payload = decode_token(token, allow_expired=True)
    except (PyJWTError, JWTExtendedException) as exc:
        raise InvalidInput(f"not a valid refresh token ({exc})", field=field) from None
    if payload.get("type") != "refresh" or str(payload.get("sub")) != str(user.id):
        raise InvalidInput("not a refresh token of yours", field=field)
    try:
        jti = uuid.UUID(str(payload.get("jti")))
    except ValueError:
        raise InvalidInput("not a valid refresh token", field=field) from None
    users.revoke_token(db_session(), jti=jti, user_id=user.id, expires_at=_expiry(payload), now=now)
