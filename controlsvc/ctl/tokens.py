"""The credential store: access and refresh tokens per service URL, readable by the user only.

``$XDG_CONFIG_HOME/jaxmba/credentials.json`` (default ``~/.config/jaxmba/``), directory mode
0700, file mode 0600, replaced atomically at every change::

    {"version": 1, "default_url": "http://127.0.0.1:5000",
     "logins": {"http://127.0.0.1:5000": {"email": "...", "access_token": "...",
                                          "refresh_token": "...", "saved_at": "..."}}}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controlsvc.ctl.errors import CtlError
from controlsvc.files import atomic_write

__all__ = ["DIR_MODE", "FILE_MODE", "Login", "TokenStore", "default_path", "normalize_url"]

DIR_MODE = 0o700
FILE_MODE = 0o600
STORE_VERSION = 1


def normalize_url(url: str) -> str:
    """The key of a login: the URL without trailing slashes."""
    return url.strip().rstrip("/")


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jaxmba" / "credentials.json"


@dataclass(frozen=True, slots=True)
class Login:
    email: str
    access_token: str
    refresh_token: str
    saved_at: str


class TokenStore:
    """Reads and writes the credentials file; every write replaces the file (mode 0600)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"version": STORE_VERSION, "logins": {}}
        except OSError as exc:
            raise CtlError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CtlError(
                f"{self.path} is not valid JSON ({exc.msg}); delete it and log in again"
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("logins"), dict):
            raise CtlError(f"{self.path} is not a jaxmba credentials file; delete it")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            os.chmod(directory, DIR_MODE)
            text = json.dumps(data, indent=2) + "\n"
            atomic_write(
                self.path, text, mode=FILE_MODE, keep_existing=False, prefix=".credentials-"
            )
        except OSError as exc:
            raise CtlError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (an advisory lock on a file next to it) against every other
        process (and thread) of this user that takes it too."""
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            fd = os.open(directory / ".credentials.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise CtlError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def default_url(self) -> str | None:
        value = self._read().get("default_url")
        return value if isinstance(value, str) and value else None

    def get(self, url: str) -> Login | None:
        entry = self._read()["logins"].get(normalize_url(url))
        if not isinstance(entry, dict):
            return None
        try:
            return Login(
                email=str(entry["email"]),
                access_token=str(entry["access_token"]),
                refresh_token=str(entry["refresh_token"]),
                saved_at=str(entry.get("saved_at", "")),
            )
        except KeyError:
            return None

    def save(self, url: str, *, email: str, access_token: str, refresh_token: str) -> Login:
        """Store tokens for ``url`` (which becomes the default URL)."""
        key = normalize_url(url)
        login = Login(
            email=email,
            access_token=access_token,
            refresh_token=refresh_token,
            saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        data = self._read()
        data["version"] = STORE_VERSION
        data["logins"][key] = asdict(login)
        data["default_url"] = key
        self._write(data)
        return login

    def delete(self, url: str) -> bool:
        """Forget the login of ``url``; True if there was one."""
        key = normalize_url(url)
        data = self._read()
        if data["logins"].pop(key, None) is None:
            return False
        if data.get("default_url") == key:
            data["default_url"] = next(iter(data["logins"]), None)
        self._write(data)
        return True
