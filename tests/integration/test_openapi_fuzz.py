"""Schemathesis over /swagger.json (auth, users, health): with an admin's token, no request of
any shape gets a 5xx, and every response matches the documented status codes, content types and
schemas. Bounded: a few examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES

pytestmark = pytest.mark.slow  # a schema fuzzer

# Examples per operation, generation mode and backend: enough to cross the documented error paths.
MAX_EXAMPLES = 10
FUZZED_PATHS = r"^/api/(auth|users|health)"
# Every built-in check runs except this one: pydantic's EmailStr (email-validator) also refuses
# addresses at special-use domains (x@ci.test, x@host.local) that JSON Schema's `format: email`
# allows, so such "valid" requests get a (documented) 422.
EXCLUDED_CHECKS = [schemathesis.checks.positive_data_acceptance]


@pytest.fixture
def admin(auth):
    return auth.admin()


def test_swagger_lists_the_auth_and_user_routes(client):
    spec = client.get("/swagger.json").get_json()
    expected = {
        "/api/auth/login": {"post"},
        "/api/auth/refresh": {"post"},
        "/api/auth/logout": {"post"},
        "/api/auth/password-reset": {"post"},
        "/api/auth/password-reset/{token}": {"post"},
        "/api/auth/invites/{token}": {"post"},
        "/api/users": {"get"},
        "/api/users/me": {"get", "patch"},
        "/api/users/me/password": {"put"},
        "/api/users/invites": {"post"},
        "/api/users/{id}": {"get", "patch"},
    }
    public = {
        "/api/auth/login",
        "/api/auth/password-reset",
        "/api/auth/password-reset/{token}",
        "/api/auth/invites/{token}",
    }
    for path, methods in expected.items():
        assert set(spec["paths"][path]) >= methods, path
        for method in methods:
            operation = spec["paths"][path][method]
            if path in public:
                assert not operation.get("security"), (path, method)
            else:
                assert operation["security"] == [{"jwt": []}], (path, method)
            assert "422" in operation["responses"] or method == "get" and path == "/api/users/me"
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert "application/problem+json" in response["content"], (path, status)
    assert spec["components"]["securitySchemes"]["jwt"]["scheme"] == "bearer"
    assert "Problem" in spec["components"]["schemas"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(app, auth, admin, mode):
    # schemathesis' own pytest plugin (`@schema.parametrize()`) needs pytest internals that
    # pytest 9 removed (`node._nodeid`); its documented `as_strategy()` with Hypothesis works.
    schema = schemathesis.openapi.from_wsgi("/swagger.json", app).include(path_regex=FUZZED_PATHS)
    # A generated query far over its maxLength may make the URL longer than the API takes: its
    # documented 414 is a rejection too.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "414"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            # Fixed examples: the same cases every run, so CI cannot pass or fail by the draw.
            derandomize=True,
            database=None,  # no .hypothesis/ directory in the repository
            suppress_health_check=list(HealthCheck),
        )
        def call(case):
            # A fresh token each time: a generated logout may revoke the previous one.
            # identity: schemathesis' WSGI transport asks for gzip but does not decode it (gzip
            # is checked in test_fleet_summary_api.py)
            case.call_and_validate(
                headers={**auth.headers(admin), "Accept-Encoding": "identity"},
                excluded_checks=EXCLUDED_CHECKS,
            )

        try:
            call()
        except Unsatisfiable:
            # nothing to make invalid (an operation without parameters or body)
            assert mode is GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis: FailureGroup
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_a_too_long_url_is_a_documented_414_problem(client, auth, admin):
    """Every operation documents 414, and the API answers it (as a problem) before gunicorn's
    own limit would answer it in plain text."""
    from controlsvc.api.errors import MAX_URI_BYTES
    from controlsvc.ops.runner import GUNICORN_REQUEST_LINE_BYTES

    assert MAX_URI_BYTES < GUNICORN_REQUEST_LINE_BYTES - 100
    spec = client.get("/swagger.json").get_json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            response = operation["responses"].get("414")
            assert response is not None, (method, path)
            assert "application/problem+json" in response["content"], (method, path)
    long_query = "x" * (MAX_URI_BYTES + 1)
    for url in (f"/api/enclosures?q={long_query}", f"/api/auth/login?{long_query}"):
        answer = client.get(url, headers=auth.headers(admin))
        assert answer.status_code == 414, url
        assert answer.mimetype == "application/problem+json"
        assert str(MAX_URI_BYTES) in answer.get_json()["detail"]
    fits = client.get(f"/api/enclosures?q={'x' * 100}", headers=auth.headers(admin))
    assert fits.status_code == 200
