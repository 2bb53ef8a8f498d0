"""Refresh-token rotation under real concurrency: parallel refreshes with one token against a
served app, on SQLite and PostgreSQL. Exactly one succeeds, the others get 401, never 500, and
at most one line of tokens (family) survives; a refresh token used after its rotation revokes
its whole family."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from controlsvc.store import users
from tests.support.server import serve

PARALLEL = 6
PROBLEM = "application/problem+json"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _works(base: str, tokens: dict[str, str]) -> bool:
    """Whether this pair of tokens still counts (its access token reads /api/users/me)."""
    response = httpx.get(f"{base}/api/users/me", headers=_bearer(tokens["access_token"]))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


@pytest.fixture
def base(app):
    with serve(app) as url:
        yield url


def _login(auth, email: str) -> dict[str, str]:
    return auth.login(auth.create(email))


def _refresh_in_parallel(base: str, refresh_token: str) -> list[httpx.Response]:
    barrier = threading.Barrier(PARALLEL)

    def refresh(_: int) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=60) as http:
            barrier.wait(30)
            return http.post("/api/auth/refresh", headers=_bearer(refresh_token))

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(refresh, range(PARALLEL)))


def _assert_one_wins(responses: list[httpx.Response]) -> dict[str, str]:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * (PARALLEL - 1), [r.text for r in responses]
    for refused in (r for r in responses if r.status_code == 401):
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert refused.json()["status"] == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    (won,) = (r.json() for r in responses if r.status_code == 200)
    return won


def test_refreshes_that_all_passed_the_token_check_one_wins_the_rest_401(auth, base, monkeypatch):
    """The interleaving that broke: every request has checked the (not yet revoked) token
    before any of them revokes it. Held at that point until all six are there."""
    first = _login(auth, "racer@example.com")
    checked = threading.Barrier(PARALLEL)
    revoke = users.revoke_token

    def revoke_when_all_checked(*args, **kwargs):
        checked.wait(30)
        return revoke(*args, **kwargs)

    monkeypatch.setattr(users, "revoke_token", revoke_when_all_checked)
    won = _assert_one_wins(_refresh_in_parallel(base, first["refresh_token"]))
    monkeypatch.undo()
    # The losers raced the winner (they had not seen the token revoked): no reuse, so the
    # winner's tokens are the one line that works.
    assert _works(base, won)
    again = httpx.post(f"{base}/api/auth/refresh", headers=_bearer(won["refresh_token"]))
    assert again.status_code == 200, again.text


def test_parallel_refreshes_of_one_token_one_wins_the_rest_401(auth, base):
    first = _login(auth, "free-for-all@example.com")
    won = _assert_one_wins(_refresh_in_parallel(base, first["refresh_token"]))
    # Only the winner got tokens. A loser that raced it leaves them be; one that came after
    # its rotation was a reuse and revoked the family. Either way the winner's pair is whole:
    # its access and refresh tokens both work or both do not.
    alive = _works(base, won)
    refreshed = httpx.post(f"{base}/api/auth/refresh", headers=_bearer(won["refresh_token"]))
    assert refreshed.status_code == (200 if alive else 401), refreshed.text


def test_a_refresh_token_used_after_its_rotation_revokes_its_family(auth, base):
    account = auth.create("thief@example.com")
    first, other_login = auth.login(account), auth.login(account)
    rotated = httpx.post(f"{base}/api/auth/refresh", headers=_bearer(first["refresh_token"]))
    assert rotated.status_code == 200
    second = rotated.json()
    assert _works(base, second)

    replay = httpx.post(f"{base}/api/auth/refresh", headers=_bearer(first["refresh_token"]))
    assert replay.status_code == 401
    assert replay.headers["content-type"].startswith(PROBLEM)
    assert "already used" in replay.json()["detail"]
    # Every token of that login stops working: the rotated-to pair and the first access token.
    assert not _works(base, second)
    assert not _works(base, first)
    again = httpx.post(f"{base}/api/auth/refresh", headers=_bearer(second["refresh_token"]))
    assert again.status_code == 401
    assert "log in again" in again.json()["detail"]
    # Another login of the same user is another family: untouched.
    assert _works(base, other_login)
    other = httpx.post(f"{base}/api/auth/refresh", headers=_bearer(other_login["refresh_token"]))
    assert other.status_code == 200


def test_parallel_replays_of_a_rotated_token_never_500(auth, base):
    first = _login(auth, "replayer@example.com")
    rotated = httpx.post(f"{base}/api/auth/refresh", headers=_bearer(first["refresh_token"]))
    assert rotated.status_code == 200
    barrier = threading.Barrier(PARALLEL)

    def replay(_: int) -> int:
        with httpx.Client(base_url=base, timeout=60) as http:
            barrier.wait(30)
            return http.post(
                "/api/auth/refresh", headers=_bearer(first["refresh_token"])
            ).status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        assert list(pool.map(replay, range(PARALLEL))) == [401] * PARALLEL
