"""/api/users: own account, administration, pagination, the last-admin rule; domain helpers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from controlsvc.api.web import database
from controlsvc.domain.errors import Conflict, InvalidInput
from controlsvc.store import users
from controlsvc.store.models.users import EmailToken, RevokedToken
from tests.integration.test_auth import assert_problem


def test_me_and_preferences(auth, client):
    account = auth.create("me@example.com", role="operator")
    headers = auth.headers(account)
    me = client.get("/api/users/me", headers=headers).get_json()
    assert me == {
        **me,
        "email": "me@example.com",
        "role": "operator",
        "state": "active",
        "disabled": False,
        "alert_emails": False,
    }
    assert "password_hash" not in me
    response = client.patch("/api/users/me", json={"alert_emails": True}, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["alert_emails"] is True
    assert auth.user(account.id).alert_emails is True
    for bad in ({}, {"alert_emails": "maybe"}, {"alert_emails": True, "role": "admin"}):
        assert_problem(client.patch("/api/users/me", json=bad, headers=headers), 422)
    assert auth.user(account.id).role == "operator"


def test_get_user_admin_or_self(auth, client):
    admin = auth.admin()
    viewer = auth.create("v@example.com")
    other = auth.create("o@example.com")
    assert client.get(f"/api/users/{viewer.id}", headers=auth.headers(viewer)).status_code == 200
    assert_problem(client.get(f"/api/users/{other.id}", headers=auth.headers(viewer)), 403)
    ok = client.get(f"/api/users/{other.id}", headers=auth.headers(admin))
    assert ok.get_json()["email"] == "o@example.com"
    assert_problem(client.get("/api/users/999999", headers=auth.headers(admin)), 404)
    assert_problem(client.get("/api/users/0", headers=auth.headers(admin)), 422)
    assert_problem(client.get("/api/users/99999999999", headers=auth.headers(admin)), 422)
    assert_problem(client.get("/api/users/abc", headers=auth.headers(admin)), 404)


def test_list_pages_and_filters(auth, client):
    admin = auth.admin()
    for i in range(7):
        auth.create(f"user{i}@example.com", role="operator" if i % 2 else "viewer")
    auth.create("under_score@example.com")
    auth.create("percent@example.org")
    headers = auth.headers(admin)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/users", query_string=params, headers=headers).get_json()
        seen += [item["email"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert len(seen) == 10
    assert len(set(seen)) == 10
    assert seen[0] == "admin@example.com"

    def emails(**params):
        response = client.get("/api/users", query_string=params, headers=headers)
        assert response.status_code == 200, response.get_json()
        return [item["email"] for item in response.get_json()["items"]]

    assert len(emails(role="operator")) == 3
    assert emails(role="admin") == ["admin@example.com"]
    assert emails(q="USER1") == ["user1@example.com"]
    assert emails(q="_") == ["under_score@example.com"]  # LIKE wildcards are literal
    assert emails(q="%") == []
    assert emails(q="example.org") == ["percent@example.org"]
    assert emails(disabled="true") == []
    assert len(emails(disabled="false")) == 10


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJpZCI6ICJ4In0"}, "cursor"),  # {"id": "x"}
        ({"cursor": "eyJpZCI6IDk5OTk5OTk5OTk5fQ"}, "cursor"),  # {"id": 99999999999}
        ({"role": "owner"}, "role"),
        ({"disabled": "perhaps"}, "disabled"),
        ({"q": "a\x00b"}, "q"),
        ({"sort": "email"}, "sort"),
    ],
)
def test_list_refuses_bad_query_parameters(auth, client, params, field):
    response = client.get("/api/users", query_string=params, headers=auth.headers(auth.admin()))
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == [field]


def test_patch_role_and_disabled(auth, client):
    admin = auth.admin()
    target = auth.create("t@example.com")
    headers = auth.headers(admin)
    response = client.patch(f"/api/users/{target.id}", json={"role": "operator"}, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["role"] == "operator"
    response = client.patch(
        f"/api/users/{target.id}", json={"disabled": True, "role": "viewer"}, headers=headers
    )
    assert response.get_json()["state"] == "disabled"
    assert response.get_json()["role"] == "viewer"
    listed = client.get("/api/users", query_string={"disabled": "true"}, headers=headers)
    assert [u["email"] for u in listed.get_json()["items"]] == ["t@example.com"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"role": None}, "role"),
        ({"disabled": None}, "disabled"),
        ({"role": "root"}, "role"),
        ({"disabled": "yes please"}, "disabled"),
        ({"email": "new@example.com"}, "email"),
    ],
)
def test_patch_refuses_bad_bodies(auth, client, body, field):
    admin = auth.admin()
    target = auth.create("t2@example.com")
    response = client.patch(f"/api/users/{target.id}", json=body, headers=auth.headers(admin))
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == [field]
    assert auth.user(target.id).role == "viewer"


def test_patch_unknown_user_is_404(auth, client):
    response = client.patch(
        "/api/users/424242", json={"disabled": True}, headers=auth.headers(auth.admin())
    )
    assert_problem(response, 404)


def test_last_active_admin_cannot_demote_or_disable_themselves(auth, client):
    admin = auth.admin()
    headers = auth.headers(admin)
    for change, field in (({"role": "viewer"}, "role"), ({"disabled": True}, "disabled")):
        response = client.patch(f"/api/users/{admin.id}", json=change, headers=headers)
        body = assert_problem(response, 409, detail="last active administrator")
        assert body["errors"][0]["field"] == field
    assert auth.user(admin.id).role == "admin"
    # with a second active admin it is allowed
    second = auth.create("second@example.com", role="admin")
    response = client.patch(f"/api/users/{admin.id}", json={"role": "operator"}, headers=headers)
    assert response.status_code == 200
    # now `second` is the last one
    response = client.patch(
        f"/api/users/{second.id}", json={"disabled": True}, headers=auth.headers(second)
    )
    assert_problem(response, 409)


def test_an_invited_or_disabled_admin_does_not_count(auth, client):
    admin = auth.admin()
    headers = auth.headers(admin)
    client.post(
        "/api/users/invites", json={"email": "adm2@example.com", "role": "admin"}, headers=headers
    )
    disabled = auth.create("adm3@example.com", role="admin")
    client.patch(f"/api/users/{disabled.id}", json={"disabled": True}, headers=headers)
    response = client.patch(f"/api/users/{admin.id}", json={"role": "viewer"}, headers=headers)
    assert_problem(response, 409)
    # changing the role of a disabled admin is fine
    ok = client.patch(f"/api/users/{disabled.id}", json={"role": "viewer"}, headers=headers)
    assert ok.status_code == 200


# --- domain functions (also used by the CLI and the bridge) ---------------------------------


def test_create_user_enforces_policy_and_uniqueness(app, database):
    with app.app_context(), database.session() as session:
        user = users.create_user(
            session, email=" First@Example.COM ", password="bumpy-lantern-42", role="admin"
        )
        assert user.email == "first@example.com"
        with pytest.raises(Conflict) as dup:
            users.create_user(
                session, email="FIRST@example.com", password="bumpy-lantern-42", role="viewer"
            )
        assert dup.value.field == "email"
        assert "already exists" in dup.value.detail
        with pytest.raises(InvalidInput) as weak:
            users.create_user(session, email="b@example.com", password="password1", role="viewer")
        assert weak.value.field == "password"
        with pytest.raises(InvalidInput) as bad_email:
            users.create_user(session, email="nope", password="bumpy-lantern-42", role="viewer")
        assert bad_email.value.field == "email"
        with pytest.raises(InvalidInput) as bad_role:
            users.create_user(
                session, email="c@example.com", password="bumpy-lantern-42", role="root"
            )
        assert bad_role.value.field == "role"


def test_purge_expired_removes_only_expired_rows(app, database):
    now = datetime.now(UTC)
    with database.session() as session:
        user = users.create_user(
            session, email="p@example.com", password="bumpy-lantern-42", role="viewer"
        )
        keep, drop = uuid.uuid4(), uuid.uuid4()
        session.add_all(
            [
                RevokedToken(jti=keep, user_id=user.id, expires_at=now + timedelta(hours=1)),
                RevokedToken(jti=drop, user_id=user.id, expires_at=now - timedelta(hours=1)),
                EmailToken(
                    token_hash="a" * 64,
                    purpose="reset",
                    user_id=user.id,
                    expires_at=now - timedelta(seconds=1),
                ),
                EmailToken(
                    token_hash="b" * 64,
                    purpose="reset",
                    user_id=user.id,
                    expires_at=now + timedelta(hours=1),
                ),
            ]
        )
    with database.session() as session:
        assert users.purge_expired(session, now) == 2
    with database.session() as session:
        assert session.get(RevokedToken, keep) is not None
        assert session.get(RevokedToken, drop) is None
        assert [t.token_hash for t in session.query(EmailToken)] == ["b" * 64]


def test_alert_recipients_are_active_opted_in_users(auth, client, app):
    opted = auth.create("opted@example.com")
    auth.create("quiet@example.com")
    off = auth.create("off@example.com")
    admin = auth.admin()
    for account in (opted, off):
        client.patch("/api/users/me", json={"alert_emails": True}, headers=auth.headers(account))
    client.patch(f"/api/users/{off.id}", json={"disabled": True}, headers=auth.headers(admin))
    with app.app_context(), database().session() as session:
        assert users.alert_recipients(session) == ["opted@example.com"]
