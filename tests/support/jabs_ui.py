"""The original JABS UI's HTTP behaviour (jabs-compat.md §1, §2, §4), for replaying its calls.

``JabsUi`` sends what the Angular services send, the way its JWT interceptor does: a bearer
token on every call but login, refresh, send_pw_reset and reset_password; on a 401 one
refresh (``auth/refresh`` with the refresh token, keeping only ``access``) and one replay;
when that fails, the tokens are deleted and the user is sent to ``/login?next=<path>``.
``retry`` repeats a failing call up to three more times, as the services' ``retry(3)`` does.
The ``check_*`` functions assert every field the UI reads, with the type it needs.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

NO_TOKEN = ("auth/login", "auth/refresh", "user/send_pw_reset")
DEVICE_STATES = {"IDLE", "BUSY", "DOWN"}
SESSION_STATUSES = {"IN_PROGRESS", "COMPLETE", "CANCELED"}
ROW_STATUSES = {"PENDING", "RECORDING", "COMPLETE", "FAILED", "CANCELED"}

Send = Callable[[str, str, dict[str, str], Any], tuple[int, Any]]


@dataclass
class Call:
    method: str
    path: str
    status: int


@dataclass
class JabsUi:
    send: Send  # (method, url, headers, json body or None) -> (status, decoded body or None)
    api: str = ""  # environment.api: '' in a production build
    storage: dict[str, str] = field(default_factory=dict)  # localStorage
    calls: list[Call] = field(default_factory=list)
    location: str = "/dashboard"

    # -- the interceptor -----------------------------------------------------------------
    def _raw(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, answer = self.send(method, self.api + path, headers, body)
        self.calls.append(Call(method, path, status))
        return status, answer

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        needs_token = path not in NO_TOKEN and "/reset_password/" not in path
        token = self.storage.get("access_token") if needs_token else None
        status, answer = self._raw(method, path, body, token)
        if status == 401 and needs_token:
            if self._refresh():
                status, answer = self._raw(method, path, body, self.storage["access_token"])
            else:
                self.logout()
        elif status == 400 and isinstance(answer, dict) and answer.get("error") == "invalid_grant":
            self.logout()
        return status, answer

    def _refresh(self) -> bool:
        refresh = self.storage.get("refresh_token")
        if not refresh:
            return False
        status, answer = self._raw("POST", "auth/refresh", None, refresh)
        if status != 200:
            return False
        assert set(answer) == {"access"}, answer
        self.storage["access_token"] = answer["access"]
        return True

    def logout(self) -> None:
        self.storage.clear()
        self.location = f"/login?next={self.location}"

    def retry(self, method: str, path: str, body: Any = None, times: int = 3) -> tuple[int, Any]:
        for _ in range(times):
            status, answer = self.request(method, path, body)
            if status < 400:
                return status, answer
        return self.request(method, path, body)

    # -- login.service -------------------------------------------------------------------
    def login(self, email: str, password: str) -> tuple[int, Any]:
        status, answer = self.request(
            "POST", "auth/login", {"email_address": email, "password": password}
        )
        if status == 200:
            self.storage["access_token"] = answer["access"]
            self.storage["refresh_token"] = answer["refresh"]
        return status, answer

    def logged_in(self) -> bool:
        """Both tokens present and unexpired (the UI decodes them without verifying)."""
        now = time.time()
        return all(
            name in self.storage and claims(self.storage[name])["exp"] > now
            for name in ("access_token", "refresh_token")
        )

    def identity(self) -> dict[str, Any]:
        identity = claims(self.storage["access_token"])["identity"]
        assert isinstance(identity["uid"], int)
        assert isinstance(identity["email_address"], str)
        assert isinstance(identity["admin"], bool)
        return dict(identity)


def claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _iso_with_offset(value: Any) -> None:
    assert isinstance(value, str), value
    assert datetime.fromisoformat(value).utcoffset() is not None, value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_device(device: dict[str, Any]) -> None:
    """Every field the dashboard, the device card, its info dialog and the live button read."""
    assert isinstance(device["id"], int)
    assert isinstance(device["name"], str)
    assert isinstance(device["location"], str)  # .toLowerCase() in the filter
    assert device["state"] in DEVICE_STATES
    if device["last_update"] is not None:
        _iso_with_offset(device["last_update"])
    camera = device["sensor_status"]["camera"]
    assert isinstance(camera["recording"], bool)
    if camera["recording"]:
        assert isinstance(camera["duration"], int)
        assert _number(camera["fps"])
    info = device["system_info"]
    assert isinstance(info["uptime"], int)
    assert _number(info["load"])
    for key in ("total_ram", "free_ram", "total_disk", "free_disk"):
        assert isinstance(info[key], int), key


def check_session(session: dict[str, Any]) -> None:
    """Every field the session table reads."""
    assert isinstance(session["id"], int)
    assert isinstance(session["name"], str)
    _iso_with_offset(session["creation_time"])
    assert isinstance(session["duration"], int)
    assert session["status"] in SESSION_STATUSES
    assert isinstance(session["fragment_hourly"], bool)
    assert isinstance(session["apply_filter"], bool)
    for row in session["device_statuses"]:
        check_device(row["device"])
        assert row["status"] in ROW_STATUSES
        assert isinstance(row["recording_time"], int)


def flask_send(client: Any) -> Send:
    """``JabsUi.send`` over a Flask test client."""

    def send(method: str, url: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"method": method, "headers": headers}
        if body is not None:
            kwargs["json"] = body
        response = client.open(url, **kwargs)
        return response.status_code, response.get_json(silent=True)

    return send
