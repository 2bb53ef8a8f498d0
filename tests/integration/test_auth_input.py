"""Bad input on the auth and user routes: always a 4xx problem+json naming the field, never a
500, and nothing written."""

from __future__ import annotations

import pytest

from controlsvc.api.web import database
from controlsvc.ops.app import create_app
from controlsvc.store.models.users import EmailToken, User
from tests.integration.test_auth import assert_problem
from tests.support.auth import PASSWORD

LOGIN = "/api/auth/login"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["email", "password"]),
        ({"email": "a@example.com"}, ["password"]),
        ({"email": 5, "password": "x"}, ["email"]),
        ({"email": "a@example.com", "password": ["x"]}, ["password"]),
        ({"email": "a@example.com", "password": None}, ["password"]),
        ({"email": "not an email", "password": "x"}, ["email"]),
        ({"email": "a@example.com", "password": "x", "admin": True}, ["admin"]),
        ({"email": "a@example.com", "password": "x" * 1025}, ["password"]),
        ({"email": "a\u0000b@example.com", "password": "x"}, ["email"]),
        ([{"email": "a@example.com"}], ["body"]),
    ],
)
def test_login_validation_names_the_fields(client, body, fields):
    response = client.post(LOGIN, json=body)
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == fields
    assert problem["title"] == "Invalid input"
    for field in fields:
        assert field in problem["detail"]


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{bad json", "application/json", 400),
        ('{"email": NaN}', "application/json", 400),
        ("[" * 5000 + "]" * 5000, "application/json", 400),
        (b"\xff\xfe{}", "application/json", 400),
        ("email=a@example.com", "application/x-www-form-urlencoded", 415),
        ("<xml/>", "text/xml", 415),
        ("", "application/json", 422),
        ("null", "application/json", 422),
        ('"just a string"', "application/json", 422),
    ],
)
def test_malformed_bodies_are_4xx_problems(client, data, content_type, status):
    response = client.post(LOGIN, data=data, content_type=content_type)
    assert_problem(response, status)


@pytest.mark.parametrize("data", ["null", "[]", "[{}]", "3", "true"])
def test_a_body_that_is_not_an_object_is_refused_even_where_one_is_optional(client, auth, data):
    """`null` is not "no body": logout's body is optional, yet it must be an object if sent."""
    headers = auth.headers(auth.create("viewer@example.com"))
    response = client.post(
        "/api/auth/logout", data=data, content_type="application/json", headers=headers
    )
    problem = assert_problem(response, 422)
    assert problem["errors"] == [{"field": "body", "message": "must be a JSON object"}]
    # Nothing happened: the token still works.
    assert client.get("/api/users/me", headers=headers).status_code == 200


def test_lone_surrogates_are_refused(client):
    data = '{"email": "a@example.com", "password": "\\ud800-abcdefgh"}'
    response = client.post(LOGIN, data=data, content_type="application/json")
    assert assert_problem(response, 422)["errors"][0]["field"] == "password"


def test_oversized_body_is_413(settings, database):
    service = settings.service.model_copy(update={"max_request_bytes": 2048})
    app = create_app(settings.model_copy(update={"service": service}), database=database)
    response = app.test_client().post(
        LOGIN, json={"email": "a@example.com", "password": "x" * 4000}
    )
    body = assert_problem(response, 413)
    assert "2048" in body["detail"]


def test_wrong_method_is_405_with_allow(client):
    response = client.get(LOGIN)
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/api/users/invites", {"email": "x@example.com", "role": 3}, "role"),
        ("post", "/api/users/invites", {"email": "x@example.com", "role": "viewer", "a": 1}, "a"),
        ("patch", "/api/users/me", {"alert_emails": "sometimes"}, "alert_emails"),
        (
            "put",
            "/api/users/me/password",
            {"new_password": "a-long-new-secret"},
            "current_password",
        ),
        (
            "put",
            "/api/users/me/password",
            {"current_password": PASSWORD, "new_password": 12345678},
            "new_password",
        ),
        ("post", "/api/auth/logout", {"refresh_token": 5}, "refresh_token"),
        ("post", "/api/auth/logout", {"refresh": "x"}, "refresh"),
        ("post", "/api/auth/password-reset", {"mail": "x@example.com"}, "email"),
        ("post", "/api/auth/password-reset/sometoken", {"password": 1234567890}, "password"),
        ("post", "/api/auth/password-reset/sometoken", {"password": "short"}, "password"),
        ("post", "/api/auth/invites/sometoken", {}, "password"),
    ],
)
def test_route_validation_names_the_field(auth, client, method, path, body, field):
    admin = auth.admin()
    response = getattr(client, method)(path, json=body, headers=auth.headers(admin))
    problem = assert_problem(response, 422)
    assert field in [e["field"] for e in problem["errors"]]


def test_refused_requests_write_nothing(auth, client, app):
    admin = auth.admin()
    headers = auth.headers(admin)
    before = _counts(app)
    requests = [
        ("post", "/api/users/invites", {"email": "new@example.com", "role": "god"}),
        ("post", "/api/users/invites", {"email": "admin@example.com", "role": "viewer"}),
        ("patch", f"/api/users/{admin.id}", {"role": "viewer"}),
        ("patch", f"/api/users/{admin.id}", {"role": "viewer", "bogus": 1}),
        ("put", "/api/users/me/password", {"current_password": "nope", "new_password": "x" * 9}),
        ("post", "/api/auth/invites/unknown-token", {"password": "a-long-new-secret"}),
    ]
    for method, path, body in requests:
        response = getattr(client, method)(path, json=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.get_json())
    assert _counts(app) == before
    assert auth.user(admin.id).role == "admin"


def test_logout_without_body_or_with_empty_object(auth, client):
    account = auth.create("plain@example.com")
    assert client.post("/api/auth/logout", headers=auth.headers(account)).status_code == 204
    response = client.post("/api/auth/logout", json={}, headers=auth.headers(account))
    assert response.status_code == 204


def _counts(app):
    with app.app_context(), database().session() as session:
        return session.query(User).count(), session.query(EmailToken).count()
