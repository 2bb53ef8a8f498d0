"""The JABS-compatible REST layer: the calls of the original UI and the device client's
heartbeat, at ``[JABS] url_prefix``, over this service's own domain functions.

A thin adapter: bodies are validated here (400 naming the field), the domain decides, and
``_jabs_errors`` turns every error this blueprint answers into the original's JSON object
with a string ``message`` (the UI evaluates ``'message' in err.error``).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any, ParamSpec, TypeVar

from flask import Blueprint, Flask, Response, current_app, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.api import mail as api_mail
from controlsvc.api import ratelimit, tokens
from controlsvc.api.errors import PROBLEM_MIME
from controlsvc.api.sessions import commit_and_publish
from controlsvc.api.web import DATABASE_KEY, db_session, settings
from controlsvc.bridge.writer import DatabaseDown
from controlsvc.compat.jabs import ids, shapes
from controlsvc.compat.jabs.gateway import Gateway
from controlsvc.config.settings import Settings
from controlsvc.domain import mail as domain_mail
from controlsvc.domain.errors import Conflict, DomainError, Forbidden, NotFound, Unauthorized
from controlsvc.domain.session_state import ACTIVE_ENCLOSURE_STATES
from controlsvc.mqtt import publisher as mqtt_publisher
from controlsvc.store import eventlog, sessions, users
from controlsvc.store.db import utcnow
from controlsvc.store.models.enclosures import AgentEvent, Enclosure
from controlsvc.store.models.jabs import JabsEnclosure
from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure
from controlsvc.store.models.users import User
from schemas.enums import EventKind, Role
from schemas.rest.sessions import SessionCreate
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = ["GATEWAY_KEY", "make_blueprint", "register"]

GATEWAY_KEY = "jaxmba.jabs.gateway"
BAD_LOGIN = "unable to authenticate user"
RESET_ACCEPTED = "If an active account uses this address, a reset link is on its way."
EDITORS = (Role.ADMIN, Role.OPERATOR)
_ACTIVE = [s.value for s in ACTIVE_ENCLOSURE_STATES]
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"

P = ParamSpec("P")
R = TypeVar("R")


class BadBody(DomainError):
    """400 with the original's ``errors`` object (field -> message)."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, errors: dict[str, str]) -> None:
        super().__init__(detail)
        self.errors = errors


def _message(status: int, message: str, errors: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"message": message}
    if errors:
        body["errors"] = errors
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _body(model: type[BaseModel]) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadBody("the body must be a JSON object", {"body": "must be a JSON object"})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = {
            ".".join(str(p) for p in err["loc"]) or "body": err["msg"]
            for err in exc.errors(include_url=False)
        }
        raise BadBody("; ".join(f"{k}: {v}" for k, v in errors.items()), errors) from None


def _login_required(*roles: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """An access token (401 otherwise) whose user has one of ``roles`` (any if none)."""
    allowed = frozenset(role.value for role in roles)

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            verify_jwt_in_request()
            if allowed and tokens.current_identity().role not in allowed:
                raise Forbidden("You are unauthorized to perform this action")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def _identity(user: User) -> dict[str, Any]:
    return {
        "identity": {
            "uid": user.id,
            "email_address": user.email,
            "admin": user.role == Role.ADMIN.value,
        }
    }


def _topics() -> Topics:
    return Topics(settings().mqtt.topic_prefix)


def _ui_url() -> str:
    config = settings()
    return (config.jabs.ui_url or config.service.public_url).rstrip("/")


# -- reading ---------------------------------------------------------------------------------


def _busy(session: Session, eids: list[str]) -> set[str]:
    return set(
        session.scalars(
            select(SessionEnclosure.enclosure_id).where(
                SessionEnclosure.enclosure_id.in_(eids), SessionEnclosure.state.in_(_ACTIVE)
            )
        )
    )


def _devices(session: Session, encs: list[Enclosure]) -> dict[str, dict[str, Any]]:
    eids = [enc.id for enc in encs]
    jids = ids.enclosure_ids(session, eids)
    busy = _busy(session, eids)
    return {
        enc.id: shapes.device_out(jids[enc.id], enc, busy=enc.id in busy or _recording(enc))
        for enc in encs
    }


def _recording(enc: Enclosure) -> bool:
    return ((enc.status or {}).get("camera") or {}).get("recording") is True


def _stopped_seconds(session: Session, sids: list[str]) -> dict[tuple[str, str], float]:
    """What each enclosure said it recorded when it stopped (a legacy device has no segments
    to prove it, so its count comes from here)."""
    found: dict[tuple[str, str], float] = {}
    for eid, sid, data in session.execute(
        select(AgentEvent.enclosure_id, AgentEvent.session_id, AgentEvent.data).where(
            AgentEvent.session_id.in_(sids),
            AgentEvent.kind == EventKind.RECORDING_STOPPED.value,
        )
    ):
        value = (data or {}).get("recorded_s")
        if sid is not None and isinstance(value, int | float):
            found[(sid, eid)] = float(value)
    return found


def _sessions_out(session: Session, rows: list[RecordingSession]) -> list[dict[str, Any]]:
    sids = [rs.id for rs in rows]
    if not sids:
        return []
    parts = list(
        session.scalars(select(SessionEnclosure).where(SessionEnclosure.session_id.in_(sids)))
    )
    encs = list(
        session.scalars(
            select(Enclosure).where(Enclosure.id.in_({se.enclosure_id for se in parts}))
        )
    )
    devices = _devices(session, encs)
    jids = ids.session_ids(session, sids)
    stopped = _stopped_seconds(session, sids)
    by_session: dict[str, list[tuple[SessionEnclosure, dict[str, Any], float]]] = {}
    for se in parts:
        seconds = max(se.recorded_s, stopped.get((se.session_id, se.enclosure_id), 0.0))
        by_session.setdefault(se.session_id, []).append((se, devices[se.enclosure_id], seconds))
    return [shapes.session_out(jids[rs.id], rs, by_session.get(rs.id, [])) for rs in rows]


# -- the blueprint ---------------------------------------------------------------------------


def make_blueprint(prefix: str) -> Blueprint:
    bp = Blueprint("jabs", __name__, url_prefix=prefix)

    @bp.after_request
    def _jabs_errors(response: Response) -> Response:
        """Errors as the original's JSON object with ``message``; 422 as its 400; CORS."""
        if response.status_code >= 400 and response.mimetype == PROBLEM_MIME:
            problem = json.loads(response.get_data(as_text=True) or "{}")
            status = 400 if response.status_code == 422 else response.status_code
            errors = {
                str(e.get("field") or "body"): str(e.get("message"))
                for e in problem.get("errors") or []
            }
            fixed = _message(status, str(problem.get("detail") or problem.get("title")), errors)
            for key in ("WWW-Authenticate", "Retry-After", "Allow"):
                if key in response.headers:
                    fixed.headers[key] = response.headers[key]
            response = fixed
        _cors(response)
        return response

    @bp.errorhandler(BadBody)
    def _bad_body(exc: BadBody) -> Response:
        return _message(400, exc.detail, exc.errors)

    # -- auth ---------------------------------------------------------------------------------
    @bp.post("/auth/login")
    def login() -> Any:
        body = _body(shapes.LoginIn)
        ratelimit.check_attempt("login", body.email_address)
        try:
            user = users.authenticate(
                db_session(), email=body.email_address, password=body.password, now=utcnow()
            )
        except Unauthorized:
            return _message(401, BAD_LOGIN)
        pair = tokens.issue_tokens(user, _identity(user))
        return {"access": pair.access_token, "refresh": pair.refresh_token}

    @bp.post("/auth/refresh")
    def refresh() -> Any:
        verify_jwt_in_request(refresh=True)
        user = tokens.current_user()
        # The original never rotates refresh tokens: the new access token joins the refresh
        # token's login (its family), so a logout or a detected reuse revokes it too.
        claimed = get_jwt().get(tokens.FAMILY_CLAIM)
        family = uuid.UUID(str(claimed)) if claimed else None
        pair = tokens.issue_tokens(user, _identity(user), family=family)
        return {"access": pair.access_token}

    # -- devices ------------------------------------------------------------------------------
    @bp.get("/device")
    @_login_required()
    def list_devices() -> Any:
        session = db_session()
        encs = list(session.scalars(select(Enclosure).where(Enclosure.retired_at.is_(None))))
        devices = _devices(session, encs)
        return Response(
            json.dumps(sorted(devices.values(), key=lambda d: d["id"])),
            mimetype="application/json",
        )

    @bp.get("/device/stream/<int:jid>")
    @_login_required()
    def stream(jid: int) -> Any:
        session = db_session()
        row = ids.enclosure_of(session, jid)
        enc = session.get(Enclosure, row.enclosure_id)
        if enc is None or not _recording(enc):
            return _message(503, "device is not recording: no live stream")
        row.stream_requested_at = utcnow()
        return Response("null", mimetype="application/json")

    @bp.post("/device/heartbeat")
    def heartbeat() -> Any:
        return _heartbeat(None)

    @bp.post("/device-token/<string:token>/device/heartbeat")
    def heartbeat_with_token(token: str) -> Any:
        return _heartbeat(token)

    # -- recording sessions -------------------------------------------------------------------
    @bp.get("/recording-session")
    @_login_required()
    def list_sessions() -> Any:
        session = db_session()
        rows = list(
            session.scalars(
                select(RecordingSession)
                .where(RecordingSession.archived_at.is_(None))
                .order_by(RecordingSession.created_at.desc(), RecordingSession.id.desc())
            )
        )
        return Response(json.dumps(_sessions_out(session, rows)), mimetype="application/json")

    @bp.post("/recording-session")
    @_login_required(*EDITORS)
    def create_session() -> Any:
        body = _body(shapes.SessionIn)
        session = db_session()
        wanted = [spec.device_id for spec in body.device_spec]
        rows = {
            row.id: row
            for row in session.scalars(select(JabsEnclosure).where(JabsEnclosure.id.in_(wanted)))
        }
        unknown = sorted({jid for jid in wanted if jid not in rows})
        if unknown:
            return _message(400, f"Invalid device IDs: {unknown}")
        try:
            create = SessionCreate(
                name=body.name,
                enclosures=[
                    {"id": rows[s.device_id].enclosure_id, "file_prefix": s.filename_prefix}
                    for s in body.device_spec
                ],
                duration_s=body.duration,
                fragment_hourly=body.fragment_hourly,
                target_fps=body.target_fps,
                apply_filter=body.apply_filter,
            )
        except ValidationError as exc:
            errors = {
                ".".join(str(p) for p in err["loc"]): err["msg"]
                for err in exc.errors(include_url=False)
            }
            return _message(400, "; ".join(f"{k}: {v}" for k, v in errors.items()), errors)
        rs, outgoing = sessions.create_session(
            session,
            _topics(),
            create,
            created_by_id=tokens.current_identity().user_id,
            now=utcnow(),
        )
        commit_and_publish(session, outgoing)
        return _sessions_out(session, [rs])[0]

    @bp.delete("/recording-session/<int:jid>")
    @_login_required(*EDITORS)
    def delete_session(jid: int) -> Any:
        session = db_session()
        sid = ids.session_of(session, jid)
        now = utcnow()
        try:
            _rs, outgoing = sessions.cancel_session(session, _topics(), sid, now=now)
        except Conflict:  # already finished: nothing left to cancel
            outgoing = []
        commit_and_publish(session, outgoing)
        if request.args.get("archive", "").lower() == "true":
            sessions.archive_session(session, sid, now=now)
        return "", 204

    @bp.delete("/recording-session/<int:jid>/device-status/<int:did>")
    @_login_required(*EDITORS)
    def stop_device(jid: int, did: int) -> Any:
        session = db_session()
        sid = ids.session_of(session, jid)
        eid = ids.enclosure_of(session, did).enclosure_id
        try:
            _rs, outgoing = sessions.cancel_enclosure(session, _topics(), sid, eid, now=utcnow())
        except Conflict:  # it or the session already finished: nothing to stop
            outgoing = []
        commit_and_publish(session, outgoing)
        return "", 204

    # -- users --------------------------------------------------------------------------------
    @bp.put("/user/<int:uid>/change_password")
    @_login_required()
    def change_password(uid: int) -> Any:
        user = tokens.current_user()
        if uid != user.id:
            raise Forbidden("you can only change your own password")
        body = _body(shapes.ChangePasswordIn)
        ratelimit.check_attempt("password-change", user.email)
        users.change_password(
            db_session(),
            user,
            current_password=body.old_password,
            new_password=body.new_password,
            now=utcnow(),
        )
        return "", 204

    @bp.post("/user/invite")
    @_login_required(Role.ADMIN)
    def invite() -> Any:
        body = _body(shapes.InviteIn)
        session = db_session()
        admin = tokens.current_user()
        hours = settings().service.email_token_hours
        existing = session.scalar(select(User).where(User.email == body.email.strip().lower()))
        # Re-inviting leaves the role as it is (the original's `admin` stays unchanged).
        role = (
            existing.role
            if existing is not None
            else (Role.ADMIN if body.admin else Role.OPERATOR).value
        )
        user, token, _created = users.invite_user(
            session, email=body.email, role=role, invited_by=admin, now=utcnow(), hours=hours
        )
        link = f"{_ui_url()}/password-reset/{user.id}/{token}"
        api_mail.send_after_commit(
            session,
            domain_mail.invite_mail(
                to=user.email, link=link, role=user.role, invited_by=admin.email, hours=hours
            ),
        )
        return "", 204

    @bp.post("/user/send_pw_reset")
    def send_pw_reset() -> Any:
        body = _body(shapes.ResetRequestIn)
        ratelimit.check_attempt("password-reset", body.email)
        session = db_session()
        hours = settings().service.email_token_hours
        found = users.request_password_reset(session, email=body.email, now=utcnow(), hours=hours)
        if found is not None:
            user, token = found
            link = f"{_ui_url()}/password-reset/{user.id}/{token}"
            api_mail.send_after_commit(
                session, domain_mail.reset_mail(to=user.email, link=link, hours=hours)
            )
        return {"message": RESET_ACCEPTED}, 202

    @bp.post("/user/<int:uid>/reset_password/<string:token>")
    def reset_password(uid: int, token: str) -> Any:
        body = _body(shapes.ResetIn)
        session = db_session()
        try:
            users.get_user(session, uid)
        except NotFound:
            return _message(404, "user not found")
        now = utcnow()
        try:
            user = users.reset_password(session, token=token, password=body.password, now=now)
        except NotFound:
            try:
                user = users.accept_invite(session, token=token, password=body.password, now=now)
            except NotFound:
                return _message(401, "token not valid or expired")
        if user.id != uid:
            return _message(401, "token not valid")
        return "", 204

    return bp


def _cors(response: Response) -> None:
    origin = request.headers.get("Origin")
    if not origin:
        return
    allowed = [o.strip() for o in settings().jabs.cors_origins.split(",") if o.strip()]
    if "*" in allowed:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
    else:
        return
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"


def _client_address() -> str | None:
    """The device's address: the peer, or a trusted proxy's X-Real-IP."""
    peer = request.remote_addr
    real = request.headers.get("X-Real-IP")
    if peer and real:
        proxies = settings().jabs.networks(settings().jabs.trusted_proxies)
        try:
            if any(ip_address(peer) in net for net in proxies):
                return real.strip()
        except ValueError:
            return peer
    return peer


def _heartbeat(token: str | None) -> Any:
    """Never a 500 and never a 200 without a string ``command_name``: either would kill the
    original client (its unit does not restart it)."""
    gateway: Gateway = current_app.extensions[GATEWAY_KEY]
    bearer = request.headers.get("Authorization", "")
    if token is None and bearer.lower().startswith("bearer "):
        token = bearer[7:].strip() or None
    try:
        beat = _body(shapes.HeartbeatIn)
        reply, last_id = gateway.handle(beat, address=_client_address(), token=token)
    except BadBody as exc:
        return _message(400, exc.detail, exc.errors)
    except DomainError as exc:
        return _message(exc.status, exc.detail)
    except DatabaseDown:
        return _message(503, "the database cannot be reached; try again")
    except Exception:
        log.exception("heartbeat failed")
        return _message(503, "the heartbeat could not be handled; it was logged")
    if last_id is not None:
        eventlog.notify(
            mqtt_publisher.publisher_of(current_app), settings().mqtt.topic_prefix, last_id
        )
    body = reply.body()
    if body is None:
        return "", 204
    return Response(json.dumps(body), status=200, mimetype="application/json")


def register(app: Flask, app_settings: Settings) -> None:
    """Mount the layer when ``[JABS] enabled``."""
    if not app_settings.jabs.enabled:
        return
    tokens.init_app(app, app_settings)
    api_mail.init_app(app, app_settings)
    ratelimit.init_app(app, app_settings)
    mqtt_publisher.init_app(app, app_settings)
    app.extensions[GATEWAY_KEY] = Gateway(app_settings, app.extensions[DATABASE_KEY])
    app.register_blueprint(make_blueprint(app_settings.jabs.url_prefix))
