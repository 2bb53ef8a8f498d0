"""The REST client of ``jaxmba-ctl``: httpx, bearer tokens from the store, refresh on 401.

An answer of 401 to a request made with the stored access token triggers one
``POST /api/auth/refresh`` with the refresh token (which rotates it); the new pair is stored and
the request is sent again once. Errors become ``CtlError`` subclasses with one-line messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from controlsvc.ctl.errors import ApiError, CtlError, NotLoggedIn, ServiceUnreachable
from controlsvc.ctl.tokens import Login, TokenStore, normalize_url

__all__ = ["DEFAULT_URL", "ApiClient", "unreachable"]

DEFAULT_URL = "http://127.0.0.1:5000"
USER_AGENT = "jaxmba-ctl"
MAX_PAGES = 1000  # a list of 500 per page: half a million items is more than any lab has


def unreachable(url: str, exc: httpx.HTTPError) -> ServiceUnreachable:
    """A one-line message for a transport error."""
    if isinstance(exc, httpx.TimeoutException):
        reason = "no answer in time"
    elif isinstance(exc, httpx.ConnectError):
        reason = str(exc) or "connection refused"
    else:
        reason = str(exc) or type(exc).__name__
    return ServiceUnreachable(f"cannot reach the jaxmba service at {url}: {reason}")


def _problem_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    raise ApiError(response.status_code, _problem_body(response), response.reason_phrase)


class ApiClient:
    """Calls ``{url}/api/...`` with the stored login of ``url``."""

    def __init__(self, url: str, store: TokenStore, *, timeout: float = 10.0) -> None:
        self.url = normalize_url(url)
        self.store = store
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, headers={"User-Agent": USER_AGENT}
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- login -----------------------------------------------------------------------------------
    def login(self, email: str, password: str) -> dict[str, Any]:
        body: dict[str, Any] = self._send(
            "POST", "/api/auth/login", json={"email": email, "password": password}
        )
        self.store.save(
            self.url,
            email=email,
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
        )
        return body

    def logout(self) -> bool:
        """Revoke both tokens at the service (best effort) and forget them; True if stored."""
        login = self.store.get(self.url)
        if login is None:
            return False
        try:
            self._send(
                "POST",
                "/api/auth/logout",
                json={"refresh_token": login.refresh_token},
                token=login.access_token,
            )
        except ApiError as exc:
            if exc.status != 401:  # an expired access token: nothing left to revoke with it
                raise
        finally:
            self.store.delete(self.url)
        return True

    def _login(self) -> Login:
        login = self.store.get(self.url)
        if login is None:
            raise NotLoggedIn(
                f"not logged in to {self.url}; run: jaxmba-ctl --url {self.url} login"
            )
        return login

    def _refresh(self, login: Login) -> Login:
        # The service revokes a whole login when a refresh token is used twice, so jaxmba-ctl
        # processes refresh one at a time: one that waited finds the pair another one stored.
        with self.store.locked():
            current = self.store.get(self.url)
            if current is not None and current.refresh_token != login.refresh_token:
                return current
            try:
                body = self._send("POST", "/api/auth/refresh", token=login.refresh_token)
            except ApiError as exc:
                if exc.status == 401:
                    raise NotLoggedIn(
                        f"the login at {self.url} has expired or was revoked; run: jaxmba-ctl "
                        f"--url {self.url} login"
                    ) from exc
                raise
            return self.store.save(
                self.url,
                email=login.email,
                access_token=body["access_token"],
                refresh_token=body["refresh_token"],
            )

    def access_token(self, *, refresh: bool = False) -> str:
        """The stored access token (refreshed first when ``refresh``)."""
        login = self._login()
        return (self._refresh(login) if refresh else login).access_token

    # -- requests --------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """An authorised request; the decoded JSON body (None for 204)."""
        login = self._login()
        response = self._raw(
            method, path, json=json, params=params, token=login.access_token, timeout=timeout
        )
        if response.status_code == 401:
            login = self._refresh(login)
            response = self._raw(
                method, path, json=json, params=params, token=login.access_token, timeout=timeout
            )
        return self._decode(response)

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean)

    def get_all(self, path: str, *, limit: int = 500, **params: Any) -> list[Any]:
        """Every item of a paginated list, following ``next_cursor``."""
        items: list[Any] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = self.get(path, limit=limit, cursor=cursor, **params)
            items.extend(page.get("items", []))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

    def post(self, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        return self.request("POST", path, json=body, timeout=timeout)

    @contextmanager
    def stream(
        self, path: str, *, params: Mapping[str, Any], headers: Mapping[str, str], timeout: float
    ) -> Iterator[httpx.Response]:
        """A streamed GET with the access token (refreshed once on 401); raises on errors."""
        login = self._login()
        for attempt in range(2):
            request = self._http.build_request(
                "GET",
                path,
                params=params,
                headers={**headers, "Authorization": f"Bearer {login.access_token}"},
                timeout=httpx.Timeout(self.timeout, read=timeout),
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise unreachable(self.url, exc) from exc
            try:
                if response.status_code == 401 and attempt == 0:
                    login = self._refresh(login)
                    continue
                if not response.is_success:
                    response.read()
                    raise_for_problem(response)
                yield response
                return
            finally:
                response.close()
        raise CtlError("the service refused the refreshed token")  # pragma: no cover

    # -- transport -------------------------------------------------------------------------------
    def _raw(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return self._http.request(
                method,
                path,
                json=json,
                params=dict(params) if params else None,
                headers=headers,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc

    def _send(self, method: str, path: str, *, json: Any = None, token: str | None = None) -> Any:
        return self._decode(self._raw(method, path, json=json, token=token))

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        raise_for_problem(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CtlError(
                f"the service answered {response.status_code} with a body that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}); is "
                f"{response.url} a jaxmba service?"
            ) from exc
