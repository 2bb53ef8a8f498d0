"""The token life cycle: login, expiry, refresh rotation, logout, disabled users, password
changes, roles. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import jwt as pyjwt
import pytest
from argon2 import PasswordHasher
from flask_jwt_extended import create_access_token, create_refresh_token

from controlsvc.api.web import database
from controlsvc.domain import passwords
from controlsvc.store.models.users import User
from tests.conftest import TEST_SECRET
from tests.support.auth import PASSWORD

PROBLEM = "application/problem+json"


def assert_problem(response, status, *, detail=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    if detail is not None:
        assert detail in body["detail"], body
    return body


# --- login ------------------------------------------------------------------------------------


def test_login_answers_tokens_and_the_user(auth, client):
    account = auth.create("Viewer@Example.com")
    body = auth.login(account)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    assert body["refresh_expires_in"] == 30 * 24 * 3600
    assert body["user"]["email"] == "viewer@example.com"
    assert body["user"]["role"] == "viewer"
    assert body["user"]["state"] == "active"
    assert body["user"]["last_login_at"] is not None
    claims = pyjwt.decode(body["access_token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["sub"] == str(account.id)
    assert claims["type"] == "access"
    refresh = pyjwt.decode(body["refresh_token"], TEST_SECRET, algorithms=["HS256"])
    assert refresh["exp"] - refresh["iat"] == 30 * 24 * 3600
    assert refresh["type"] == "refresh"
    me = client.get("/api/users/me", headers=auth.headers(body["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["id"] == account.id


def test_login_email_is_case_insensitive(auth, client):
    auth.create("someone@example.com")
    response = client.post(
        "/api/auth/login", json={"email": "SomeOne@EXAMPLE.com", "password": PASSWORD}
    )
    assert response.status_code == 200


def test_login_refusals_are_all_the_same(auth, client):
    auth.create("active@example.com")
    disabled = auth.create("disabled@example.com")
    admin = auth.admin()
    client.patch(f"/api/users/{disabled.id}", json={"disabled": True}, headers=auth.headers(admin))
    invited = client.post(
        "/api/users/invites",
        json={"email": "invited@example.com", "role": "viewer"},
        headers=auth.headers(admin),
    )
    assert invited.status_code == 201
    attempts = [
        ("active@example.com", "wrong-password-1"),
        ("nobody@example.com", PASSWORD),
        ("disabled@example.com", PASSWORD),
        ("invited@example.com", PASSWORD),
        ("invited@example.com", ""),
    ]
    for email, password in attempts:
        response = client.post("/api/auth/login", json={"email": email, "password": password})
        if password == "":
            assert_problem(response, 422)
            continue
        body = assert_problem(response, 401)
        assert body["detail"] == "invalid email or password"


def test_login_rehashes_a_password_hashed_with_old_parameters(auth, client, app):
    account = auth.create("old@example.com")
    old_hash = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash(PASSWORD)
    with app.app_context(), database().session() as session:
        session.get(User, account.id).password_hash = old_hash
    auth.login(account)
    new_hash = auth.user(account.id).password_hash
    assert new_hash != old_hash
    assert not passwords.needs_rehash(new_hash)
    assert passwords.verify_password(new_hash, PASSWORD)


def test_failed_login_writes_nothing(auth, client):
    account = auth.create("quiet@example.com")
    client.post("/api/auth/login", json={"email": account.email, "password": "not-it-at-all"})
    assert auth.user(account.id).last_login_at is None


# --- token checks -------------------------------------------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(client):
    body = assert_problem(client.get("/api/users/me"), 401, detail="Authorization")
    assert body["title"] == "Unauthorized"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not.a.jwt",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    ],
)
def test_bad_tokens_are_401(client, header):
    response = client.get("/api/users/me", headers={"Authorization": header})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_signed_with_another_key_is_401(auth, client):
    account = auth.create("forged@example.com")
    forged = pyjwt.encode(
        {"sub": str(account.id), "type": "access", "jti": "x", "exp": 9999999999},
        "another-key-entirely-another-key",
        algorithm="HS256",
    )
    assert_problem(client.get("/api/users/me", headers=auth.headers(forged)), 401)


def test_expired_access_token_is_401(auth, client, app):
    account = auth.create("late@example.com")
    with app.test_request_context():
        expired = create_access_token(str(account.id), expires_delta=timedelta(seconds=-1))
    response = client.get("/api/users/me", headers=auth.headers(expired))
    assert_problem(response, 401, detail="expired")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_expired_refresh_token_is_401(auth, client, app):
    account = auth.create("later@example.com")
    with app.test_request_context():
        expired = create_refresh_token(str(account.id), expires_delta=timedelta(seconds=-1))
    response = client.post("/api/auth/refresh", headers=auth.headers(expired))
    assert_problem(response, 401, detail="refresh token has expired")


def test_token_of_a_deleted_user_is_401(auth, client, app):
    account = auth.create("gone@example.com")
    headers = auth.headers(account)
    with app.app_context(), database().session() as session:
        session.delete(session.get(User, account.id))
    assert_problem(client.get("/api/users/me", headers=headers), 401, detail="does not exist")


def test_refresh_token_is_not_an_access_token(auth, client):
    tokens = auth.login(auth.create("mixup@example.com"))
    response = client.get("/api/users/me", headers=auth.headers(tokens["refresh_token"]))
    assert_problem(response, 401, detail="refresh")
    response = client.post("/api/auth/refresh", headers=auth.headers(tokens["access_token"]))
    assert_problem(response, 401)


# --- refresh, logout -------------------------------------------------------------------------


def test_refresh_rotates_and_the_old_refresh_token_is_refused(auth, client):
    first = auth.login(auth.create("rotate@example.com"))
    response = client.post("/api/auth/refresh", headers=auth.headers(first["refresh_token"]))
    assert response.status_code == 200
    second = response.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        client.get("/api/users/me", headers=auth.headers(second["access_token"])).status_code == 200
    )
    # access tokens issued before a rotation keep working until they expire
    assert (
        client.get("/api/users/me", headers=auth.headers(first["access_token"])).status_code == 200
    )
    # the new refresh token works once
    third = client.post("/api/auth/refresh", headers=auth.headers(second["refresh_token"]))
    assert third.status_code == 200
    # a used refresh token is refused, and using it revokes every token of that login
    again = client.post("/api/auth/refresh", headers=auth.headers(first["refresh_token"]))
    assert_problem(again, 401, detail="revoked")
    for token in (first["access_token"], third.get_json()["access_token"]):
        assert_problem(client.get("/api/users/me", headers=auth.headers(token)), 401)


def test_logout_revokes_the_access_token(auth, client):
    tokens = auth.login(auth.create("bye@example.com"))
    headers = auth.headers(tokens["access_token"])
    response = client.post("/api/auth/logout", headers=headers)
    assert response.status_code == 204
    assert response.data == b""
    assert_problem(client.get("/api/users/me", headers=headers), 401, detail="revoked")
    assert_problem(client.post("/api/auth/logout", headers=headers), 401, detail="revoked")
    # the refresh token was not named: it still works
    refreshed = client.post("/api/auth/refresh", headers=auth.headers(tokens["refresh_token"]))
    assert refreshed.status_code == 200


def test_logout_with_the_refresh_token_revokes_both(auth, client):
    tokens = auth.login(auth.create("byebye@example.com"))
    response = client.post(
        "/api/auth/logout",
        json={"refresh_token": tokens["refresh_token"]},
        headers=auth.headers(tokens["access_token"]),
    )
    assert response.status_code == 204
    refused = client.post("/api/auth/refresh", headers=auth.headers(tokens["refresh_token"]))
    assert_problem(refused, 401, detail="revoked")


def test_logout_with_a_refresh_token_as_bearer(auth, client):
    tokens = auth.login(auth.create("bearer@example.com"))
    response = client.post("/api/auth/logout", headers=auth.headers(tokens["refresh_token"]))
    assert response.status_code == 204
    refused = client.post("/api/auth/refresh", headers=auth.headers(tokens["refresh_token"]))
    assert_problem(refused, 401, detail="revoked")


def test_logout_refuses_someone_elses_refresh_token_without_revoking_anything(auth, client):
    mine = auth.login(auth.create("mine@example.com"))
    theirs = auth.login(auth.create("theirs@example.com"))
    response = client.post(
        "/api/auth/logout",
        json={"refresh_token": theirs["refresh_token"]},
        headers=auth.headers(mine["access_token"]),
    )
    body = assert_problem(response, 422)
    assert body["errors"] == [{"field": "refresh_token", "message": "not a refresh token of yours"}]
    # no partial write: my access token was not revoked either
    assert (
        client.get("/api/users/me", headers=auth.headers(mine["access_token"])).status_code == 200
    )
    assert (
        client.post("/api/auth/refresh", headers=auth.headers(theirs["refresh_token"])).status_code
        == 200
    )


def test_logout_refuses_garbage_as_refresh_token(auth, client):
    mine = auth.login(auth.create("garbage@example.com"))
    response = client.post(
        "/api/auth/logout",
        json={"refresh_token": "garbage"},
        headers=auth.headers(mine["access_token"]),
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "refresh_token"


def test_logout_purges_expired_denylist_rows(auth, client, app):
    import uuid
    from datetime import UTC, datetime

    from controlsvc.store.models.users import RevokedToken

    account = auth.create("purge@example.com")
    old = uuid.uuid4()
    with app.app_context(), database().session() as session:
        session.add(
            RevokedToken(jti=old, user_id=account.id, expires_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    assert client.post("/api/auth/logout", headers=auth.headers(account)).status_code == 204
    with app.app_context(), database().session() as session:
        assert session.get(RevokedToken, old) is None
        assert session.query(RevokedToken).count() == 1  # the token just revoked


# --- disabled users, password changes ----------------------------------------------------


def test_disabling_a_user_ends_their_tokens_at_once(auth, client):
    admin = auth.admin()
    victim = auth.create("victim@example.com", role="operator")
    tokens = auth.login(victim)
    headers = auth.headers(tokens["access_token"])
    assert client.get("/api/users/me", headers=headers).status_code == 200
    response = client.patch(
        f"/api/users/{victim.id}", json={"disabled": True}, headers=auth.headers(admin)
    )
    assert response.status_code == 200
    assert response.get_json()["state"] == "disabled"
    assert_problem(client.get("/api/users/me", headers=headers), 401, detail="disabled")
    refused = client.post("/api/auth/refresh", headers=auth.headers(tokens["refresh_token"]))
    assert_problem(refused, 401)
    # enabling again does not revive the old tokens; a new login works
    client.patch(f"/api/users/{victim.id}", json={"disabled": False}, headers=auth.headers(admin))
    assert_problem(client.get("/api/users/me", headers=headers), 401)
    assert auth.login(victim)["user"]["state"] == "active"


def test_password_change_ends_older_tokens_and_answers_new_ones(auth, client):
    account = auth.create("changer@example.com")
    other_device = auth.login(account)
    this_device = auth.login(account)
    response = client.put(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a-much-better-secret"},
        headers=auth.headers(this_device["access_token"]),
    )
    assert response.status_code == 200, response.get_json()
    fresh = response.get_json()
    # tokens issued before the change (even within the same second) stop working
    for old in (other_device, this_device):
        assert_problem(
            client.get("/api/users/me", headers=auth.headers(old["access_token"])),
            401,
            detail="password change",
        )
        assert_problem(
            client.post("/api/auth/refresh", headers=auth.headers(old["refresh_token"])), 401
        )
    assert (
        client.get("/api/users/me", headers=auth.headers(fresh["access_token"])).status_code == 200
    )
    assert (
        client.post("/api/auth/refresh", headers=auth.headers(fresh["refresh_token"])).status_code
        == 200
    )
    # the new password logs in, the old one does not
    account.password = "a-much-better-secret"
    auth.login(account)
    refused = client.post("/api/auth/login", json={"email": account.email, "password": PASSWORD})
    assert_problem(refused, 401)


def test_password_change_needs_the_current_password_and_a_good_new_one(auth, client):
    account = auth.create("careful@example.com")
    headers = auth.headers(account)
    wrong = client.put(
        "/api/users/me/password",
        json={"current_password": "not-my-password", "new_password": "a-much-better-secret"},
        headers=headers,
    )
    assert assert_problem(wrong, 422)["errors"][0]["field"] == "current_password"
    weak = client.put(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "password123"},
        headers=headers,
    )
    body = assert_problem(weak, 422)
    assert body["errors"][0]["field"] == "new_password"
    assert "common" in body["errors"][0]["message"]
    short = client.put(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert assert_problem(short, 422)["errors"][0]["field"] == "new_password"
    # nothing changed: the token still works and the old password still logs in
    assert client.get("/api/users/me", headers=headers).status_code == 200
    auth.login(account)


# --- roles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_wrong_role_is_403_not_401(auth, client, role):
    account = auth.create(f"{role}@example.com", role=role)
    response = client.get("/api/users", headers=auth.headers(account))
    body = assert_problem(response, 403, detail="admin")
    assert role in body["detail"]
    invite = client.post(
        "/api/users/invites",
        json={"email": "x@example.com", "role": "viewer"},
        headers=auth.headers(account),
    )
    assert_problem(invite, 403)


def test_role_change_applies_to_existing_tokens_at_once(auth, client):
    admin = auth.admin()
    other = auth.create("promoted@example.com", role="viewer")
    headers = auth.headers(other)
    assert client.get("/api/users", headers=headers).status_code == 403
    client.patch(f"/api/users/{other.id}", json={"role": "admin"}, headers=auth.headers(admin))
    assert client.get("/api/users", headers=headers).status_code == 200


def test_no_token_is_401_before_the_body_is_validated(client):
    response = client.post("/api/users/invites", json={"nonsense": True})
    assert_problem(response, 401)


# --- rate limit ----------------------------------------------------------------------------


def _app_with_limit(settings, database, limit):
    from controlsvc.ops.app import create_app

    service = settings.service.model_copy(update={"login_rate_limit": limit})
    return create_app(settings.model_copy(update={"service": service}), database=database)


def test_login_is_rate_limited_per_account(auth, settings, database):
    limited = _app_with_limit(settings, database, "3/minute")
    client = limited.test_client()
    auth.create("target@example.com")
    for i in range(3):
        response = client.post(
            "/api/auth/login",
            json={"email": "target@example.com", "password": f"guess-number-{i}"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{i + 1}"},
        )
        assert response.status_code == 401
    # a fourth address, even with the right password: the account is over its limit
    response = client.post(
        "/api/auth/login",
        json={"email": "Target@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.0.0.99"},
    )
    body = assert_problem(response, 429)
    retry_after = int(response.headers["Retry-After"])
    # 4 attempts counted in this window (the refused one too): in the next, its weight must
    # fall to 2, half-way through it; so 30 to 90 seconds from now
    assert 30 <= retry_after <= 90
    assert str(retry_after) in body["detail"]
    # other accounts are not affected
    auth.create("bystander@example.com")
    ok = client.post(
        "/api/auth/login",
        json={"email": "bystander@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.0.0.99"},
    )
    assert ok.status_code == 200


def test_login_is_rate_limited_per_address(auth, settings, database):
    limited = _app_with_limit(settings, database, "3/minute")
    client = limited.test_client()
    for i in range(3):
        response = client.post(
            "/api/auth/login", json={"email": f"u{i}@example.com", "password": "whatever-1"}
        )
        assert response.status_code == 401
    response = client.post(
        "/api/auth/login", json={"email": "u9@example.com", "password": "whatever-1"}
    )
    assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1
    other = client.post(
        "/api/auth/login",
        json={"email": "u9@example.com", "password": "whatever-1"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert other.status_code == 401


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("login_rate_limit", "banana"),
        ("ratelimit_storage_uri", "postgres://elsewhere"),
        ("trusted_proxies", "127.0.0.1, nginx.local"),
    ],
)
def test_a_bad_rate_limit_setting_is_refused_at_load_naming_the_key(tmp_path, key, value):
    from controlsvc.config.settings import load_settings
    from controlsvc.domain.errors import ConfigError

    path = tmp_path / "jax-mba-service.config"
    path.write_text(f"[SERVICE]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"\[SERVICE\] {key}: .*\(got '{value}'\)"):
        load_settings(path, profile="test")
