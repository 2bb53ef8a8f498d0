"""jaxmba-ctl processes whose access token expired at once refresh one at a time: the service
revokes a whole login when a refresh token is used twice, so none may reuse a rotated one."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from controlsvc.ctl.api_client import ApiClient
from controlsvc.ctl.tokens import TokenStore
from tests.support.server import serve

PARALLEL = 6


def test_parallel_requests_with_an_expired_access_token_keep_the_login(auth, app, tmp_path):
    account = auth.create("ctl@example.com")
    path = tmp_path / "jaxmba" / "credentials.json"
    with serve(app) as base:
        with ApiClient(base, TokenStore(path)) as client:
            client.login(account.email, account.password)
        store = TokenStore(path)
        login = store.get(base)
        assert login is not None
        # An access token the service refuses, as after 15 minutes: every request refreshes.
        store.save(
            base, email=login.email, access_token="expired", refresh_token=login.refresh_token
        )
        barrier = threading.Barrier(PARALLEL)

        def whoami(_: int) -> str:
            # Each its own client and store: separate jaxmba-ctl processes sharing one file.
            with ApiClient(base, TokenStore(path)) as client:
                barrier.wait(30)
                return str(client.get("/api/users/me")["email"])

        with ThreadPoolExecutor(PARALLEL) as pool:
            assert list(pool.map(whoami, range(PARALLEL))) == [account.email] * PARALLEL
        # The login is whole: the stored pair works, and refreshes again.
        with ApiClient(base, TokenStore(path)) as client:
            assert client.get("/api/users/me")["email"] == account.email
            client.access_token(refresh=True)
            assert client.get("/api/users/me")["email"] == account.email
