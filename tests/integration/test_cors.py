"""``[SERVICE] cors_origins``: a page on a listed origin may call the API from a browser; any
other origin gets no CORS headers (the browser then refuses to hand it the answer)."""

from __future__ import annotations

import pytest
from flask import Flask

from controlsvc.config.sections import ServiceSettings
from controlsvc.config.settings import Settings
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database
from tests.support.auth import Auth

LAB = "https://lab.example.org"


def _app(settings: Settings, database: Database, origins: str) -> Flask:
    service = settings.service.model_copy(update={"cors_origins": origins})
    return create_app(settings.model_copy(update={"service": service}), database=database)


def _preflight(client, origin: str, path: str = "/api/enclosures"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_a_listed_origin_may_call_the_api(settings, database):
    app = _app(settings, database, f"{LAB}, http://127.0.0.1:8888")
    client = app.test_client()
    pre = _preflight(client, LAB)
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == LAB
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in pre.headers  # tokens, never cookies
    users = Auth(app, client)
    headers = users.headers(users.create("v@example.com", role="viewer"))
    answer = client.get("/api/enclosures", headers={**headers, "Origin": LAB})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == LAB
    assert "Origin" in answer.headers["Vary"]
    # Errors carry it too, so the page can read the problem.
    refused = client.get("/api/enclosures", headers={"Origin": LAB})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == LAB


def test_other_origins_and_the_default_get_nothing(settings, database):
    client = _app(settings, database, LAB).test_client()
    for origin in ("https://evil.example.com", "https://lab.example.org.evil.com"):
        pre = _preflight(client, origin)
        assert "Access-Control-Allow-Origin" not in pre.headers
        got = client.get("/api/health", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in got.headers
    default = create_app(settings, database=database).test_client()
    assert "Access-Control-Allow-Origin" not in _preflight(default, LAB).headers
    assert (
        "Access-Control-Allow-Origin"
        not in default.get("/api/health", headers={"Origin": LAB}).headers
    )
    anyone = _app(settings, database, "*").test_client()
    assert (
        anyone.get("/api/health", headers={"Origin": LAB}).headers["Access-Control-Allow-Origin"]
        == "*"
    )


@pytest.mark.parametrize("bad", ["lab.example.org", "https://lab.example.org/ui", "ftp://x"])
def test_a_malformed_origin_is_refused_with_its_key(bad):
    with pytest.raises(ValueError, match="is not an origin"):
        ServiceSettings(cors_origins=f"{LAB},{bad}")
