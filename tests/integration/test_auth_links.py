"""Emailed links: password reset and invites (single use, 24 h, stored hashed), and one real
SMTP delivery through aiosmtpd."""

from __future__ import annotations

import hashlib
import queue
import socket
from datetime import UTC, datetime, timedelta
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from controlsvc.api.mail import MAILER_KEY
from controlsvc.api.web import database
from controlsvc.mailer.delivery import SmtpMailer
from controlsvc.ops.app import create_app
from controlsvc.store.models.users import EmailToken
from tests.integration.test_auth import assert_problem

NEW_PASSWORD = "fresh-quartz-harbor"


def _request_reset(client, email):
    return client.post("/api/auth/password-reset", json={"email": email})


def _reset_token(auth, client, account):
    response = _request_reset(client, account.email)
    assert response.status_code == 202
    mails = [m for m in auth.mails() if m.to == account.email and "reset" in m.subject.lower()]
    assert mails, auth.mails()
    return auth.link_token(mails[-1], "reset-password")


# --- password reset ------------------------------------------------------------------------


def test_reset_request_answers_the_same_for_unknown_addresses(auth, client):
    auth.create("known@example.com")
    known = _request_reset(client, "known@example.com")
    unknown = _request_reset(client, "unknown@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.get_json() == unknown.get_json()
    assert known.headers.get("Content-Type") == unknown.headers.get("Content-Type")
    mails = auth.mails()
    assert [m.to for m in mails] == ["known@example.com"]
    assert "http://testserver/reset-password/" in mails[0].text


def test_reset_mail_only_for_active_users(auth, client):
    admin = auth.admin()
    disabled = auth.create("off@example.com")
    client.patch(f"/api/users/{disabled.id}", json={"disabled": True}, headers=auth.headers(admin))
    client.post(
        "/api/users/invites",
        json={"email": "pending@example.com", "role": "viewer"},
        headers=auth.headers(admin),
    )
    for email in ("off@example.com", "pending@example.com"):
        assert _request_reset(client, email).status_code == 202
    assert all("reset" not in m.subject.lower() for m in auth.mails())


def test_reset_link_sets_the_password_once_and_ends_old_tokens(auth, client, app):
    account = auth.create("forgetful@example.com")
    old_tokens = auth.login(account)
    token = _reset_token(auth, client, account)
    # only the SHA-256 of the token is stored
    with app.app_context(), database().session() as session:
        stored = session.scalars(select(EmailToken.token_hash)).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]

    response = client.post(f"/api/auth/password-reset/{token}", json={"password": NEW_PASSWORD})
    assert response.status_code == 204
    assert_problem(
        client.get("/api/users/me", headers=auth.headers(old_tokens["access_token"])), 401
    )
    account.password = NEW_PASSWORD
    auth.login(account)
    # single use
    again = client.post(
        f"/api/auth/password-reset/{token}", json={"password": "other-" + NEW_PASSWORD}
    )
    body = assert_problem(again, 404, detail="unknown, already used or expired")
    assert "token" not in body.get("errors", [{}])[0].get("field", "")
    auth.login(account)  # the second attempt changed nothing


def test_reset_link_expires(auth, client, app):
    account = auth.create("slow@example.com")
    token = _reset_token(auth, client, account)
    with app.app_context(), database().session() as session:
        row = session.scalars(select(EmailToken)).one()
        assert row.expires_at - row.created_at == timedelta(hours=24)
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    response = client.post(f"/api/auth/password-reset/{token}", json={"password": NEW_PASSWORD})
    assert_problem(response, 404, detail="expired")
    auth.login(account)  # password unchanged


def test_a_new_reset_request_replaces_the_old_link(auth, client):
    account = auth.create("twice@example.com")
    first = _reset_token(auth, client, account)
    second = _reset_token(auth, client, account)
    assert first != second
    assert_problem(
        client.post(f"/api/auth/password-reset/{first}", json={"password": NEW_PASSWORD}), 404
    )
    response = client.post(f"/api/auth/password-reset/{second}", json={"password": NEW_PASSWORD})
    assert response.status_code == 204


@pytest.mark.parametrize("token", ["nope", "x" * 128, "a%20b"])
def test_unknown_reset_links_are_404(client, token):
    response = client.post(f"/api/auth/password-reset/{token}", json={"password": NEW_PASSWORD})
    assert_problem(response, 404)


def test_too_long_link_token_is_422(client):
    response = client.post(f"/api/auth/password-reset/{'x' * 129}", json={"password": NEW_PASSWORD})
    assert assert_problem(response, 422)["errors"][0]["field"] == "token"


def test_reset_with_a_weak_password_keeps_the_link(auth, client):
    account = auth.create("weak@example.com")
    token = _reset_token(auth, client, account)
    weak = client.post(f"/api/auth/password-reset/{token}", json={"password": "qwerty123"})
    body = assert_problem(weak, 422)
    assert body["errors"][0]["field"] == "password"
    # nothing was written: the link still works
    ok = client.post(f"/api/auth/password-reset/{token}", json={"password": NEW_PASSWORD})
    assert ok.status_code == 204


def test_disabling_a_user_kills_their_reset_link(auth, client):
    admin = auth.admin()
    account = auth.create("soon-off@example.com")
    token = _reset_token(auth, client, account)
    client.patch(f"/api/users/{account.id}", json={"disabled": True}, headers=auth.headers(admin))
    response = client.post(f"/api/auth/password-reset/{token}", json={"password": NEW_PASSWORD})
    assert_problem(response, 404)


def test_reset_requests_are_rate_limited(auth, settings, database):
    from tests.integration.test_auth import _app_with_limit

    limited = _app_with_limit(settings, database, "2/minute")
    client = limited.test_client()
    for _ in range(2):
        assert _request_reset(client, "spam@example.com").status_code == 202
    response = _request_reset(client, "spam@example.com")
    assert_problem(response, 429)
    assert "Retry-After" in response.headers


# --- invites -------------------------------------------------------------------------------


def _invite(auth, client, admin, email, role="operator"):
    response = client.post(
        "/api/users/invites", json={"email": email, "role": role}, headers=auth.headers(admin)
    )
    assert response.status_code in (200, 201), response.get_json()
    mails = [m for m in auth.mails() if m.to == email.lower()]
    return response, auth.link_token(mails[-1], "invite")


def test_invite_accept_activates_and_logs_in(auth, client):
    admin = auth.admin()
    response, token = _invite(auth, client, admin, "New.Person@Example.com")
    assert response.status_code == 201
    invited = response.get_json()
    assert invited["state"] == "invited"
    assert invited["email"] == "new.person@example.com"
    mail = auth.mails()[-1]
    assert "admin@example.com invited you" in mail.text
    assert "operator" in mail.text
    assert f"http://testserver/invite/{token}" in mail.text

    accepted = client.post(f"/api/auth/invites/{token}", json={"password": NEW_PASSWORD})
    assert accepted.status_code == 200, accepted.get_json()
    body = accepted.get_json()
    assert body["user"]["state"] == "active"
    assert body["user"]["role"] == "operator"
    me = client.get("/api/users/me", headers=auth.headers(body["access_token"]))
    assert me.get_json()["email"] == "new.person@example.com"
    # single use
    again = client.post(f"/api/auth/invites/{token}", json={"password": NEW_PASSWORD})
    assert_problem(again, 404)
    # and the password works for login
    login = client.post(
        "/api/auth/login", json={"email": "new.person@example.com", "password": NEW_PASSWORD}
    )
    assert login.status_code == 200


def test_reinvite_sends_a_fresh_link_and_kills_the_old(auth, client):
    admin = auth.admin()
    first_response, first = _invite(auth, client, admin, "late@example.com", role="viewer")
    second_response, second = _invite(auth, client, admin, "late@example.com", role="operator")
    assert first_response.status_code == 201
    assert second_response.status_code == 200
    assert second_response.get_json()["role"] == "operator"
    assert first != second
    assert_problem(client.post(f"/api/auth/invites/{first}", json={"password": NEW_PASSWORD}), 404)
    ok = client.post(f"/api/auth/invites/{second}", json={"password": NEW_PASSWORD})
    assert ok.status_code == 200


def test_inviting_an_existing_account_is_409(auth, client):
    admin = auth.admin()
    auth.create("taken@example.com")
    for email in ("taken@example.com", "TAKEN@example.com", "admin@example.com"):
        response = client.post(
            "/api/users/invites",
            json={"email": email, "role": "viewer"},
            headers=auth.headers(admin),
        )
        body = assert_problem(response, 409)
        assert body["errors"][0]["field"] == "email"
    assert all(m.to != "taken@example.com" for m in auth.mails())


def test_invite_expires(auth, client, app):
    admin = auth.admin()
    _response, token = _invite(auth, client, admin, "tardy@example.com")
    with app.app_context(), database().session() as session:
        row = session.scalars(select(EmailToken)).one()
        row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    response = client.post(f"/api/auth/invites/{token}", json={"password": NEW_PASSWORD})
    assert_problem(response, 404)


def test_invite_link_is_not_a_reset_link(auth, client):
    admin = auth.admin()
    _response, token = _invite(auth, client, admin, "confused@example.com")
    response = client.post(f"/api/auth/password-reset/{token}", json={"password": NEW_PASSWORD})
    assert_problem(response, 404)


def test_invite_accept_refuses_weak_passwords_and_keeps_the_link(auth, client):
    admin = auth.admin()
    _response, token = _invite(auth, client, admin, "picky@example.com")
    weak = client.post(f"/api/auth/invites/{token}", json={"password": "letmein1"})
    assert assert_problem(weak, 422)["errors"][0]["field"] == "password"
    ok = client.post(f"/api/auth/invites/{token}", json={"password": NEW_PASSWORD})
    assert ok.status_code == 200


def test_invite_of_a_disabled_invited_user_cannot_be_accepted(auth, client):
    admin = auth.admin()
    response, token = _invite(auth, client, admin, "revoked@example.com")
    user_id = response.get_json()["id"]
    client.patch(f"/api/users/{user_id}", json={"disabled": True}, headers=auth.headers(admin))
    assert_problem(client.post(f"/api/auth/invites/{token}", json={"password": NEW_PASSWORD}), 404)


def test_invite_with_an_unknown_role_or_bad_email_is_422(auth, client):
    admin = auth.admin()
    for body, field in (
        ({"email": "a@example.com", "role": "owner"}, "role"),
        ({"email": "not-an-email", "role": "viewer"}, "email"),
        ({"email": "a@example.com"}, "role"),
    ):
        response = client.post("/api/users/invites", json=body, headers=auth.headers(admin))
        problem = assert_problem(response, 422)
        assert [e["field"] for e in problem["errors"]] == [field]
    assert auth.mails() == []


# --- real SMTP -----------------------------------------------------------------------------


class _Inbox:
    def __init__(self):
        self.messages: queue.Queue = queue.Queue()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.put((session.authenticated, session.auth_data, envelope))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _authenticator(_server, _session, _envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"mailer",
        b"mail-secret",
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@pytest.fixture
def smtp_server():
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_invite_mail_goes_through_real_smtp(settings, database, smtp_server, auth):
    port, inbox = smtp_server
    mail_settings = settings.mail.model_copy(
        update={
            "backend": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "username": "mailer",
            "sender": "jaxmba@example.org",
        }
    )
    from pydantic import SecretStr

    mail_settings = mail_settings.model_copy(update={"password": SecretStr("mail-secret")})
    smtp_app = create_app(settings.model_copy(update={"mail": mail_settings}), database=database)
    assert isinstance(smtp_app.extensions[MAILER_KEY], SmtpMailer)
    client = smtp_app.test_client()
    admin = auth.admin()
    response = client.post(
        "/api/users/invites",
        json={"email": "smtp.user@example.com", "role": "viewer"},
        headers=auth.headers(admin),
    )
    assert response.status_code == 201
    authenticated, auth_data, envelope = inbox.messages.get(timeout=10)
    assert authenticated
    assert auth_data.login == b"mailer"
    assert envelope.mail_from == "jaxmba@example.org"
    assert envelope.rcpt_tos == ["smtp.user@example.com"]
    message = message_from_bytes(envelope.original_content)
    assert message["Subject"] == "Your invitation to the JAX MBA control service"
    assert message["To"] == "smtp.user@example.com"
    text = message.get_payload(decode=True).decode()
    link = next(line.strip() for line in text.splitlines() if "/invite/" in line)
    assert link.startswith("http://testserver/invite/")
    token = link.rsplit("/", 1)[1]
    accepted = client.post(f"/api/auth/invites/{token}", json={"password": NEW_PASSWORD})
    assert accepted.status_code == 200
    assert accepted.get_json()["user"]["email"] == "smtp.user@example.com"


def test_smtp_failure_is_logged_not_raised(settings, database, auth, caplog):
    mail_settings = settings.mail.model_copy(
        update={"backend": "smtp", "host": "127.0.0.1", "port": _free_port(), "timeout_s": 2}
    )
    smtp_app = create_app(settings.model_copy(update={"mail": mail_settings}), database=database)
    client = smtp_app.test_client()
    admin = auth.admin()
    response = client.post(
        "/api/users/invites",
        json={"email": "unlucky@example.com", "role": "viewer"},
        headers=auth.headers(admin),
    )
    assert response.status_code == 201  # the invite exists; the admin can re-send it
    assert smtp_app.extensions["jaxmba.mail_outbox"].flush(timeout=10)
    assert any(
        "could not be sent" in record.getMessage() and "unlucky@example.com" in record.getMessage()
        for record in caplog.records
    )


def test_rolled_back_request_sends_no_mail(auth, client):
    admin = auth.admin()
    auth.create("exists@example.com")
    response = client.post(
        "/api/users/invites",
        json={"email": "exists@example.com", "role": "viewer"},
        headers=auth.headers(admin),
    )
    assert response.status_code == 409
    assert auth.mails() == []
