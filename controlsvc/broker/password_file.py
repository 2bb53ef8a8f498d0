"""Mosquitto 2.0 password files: hash passwords as ``mosquitto_passwd`` does, and edit the file.

A password file holds one ``username:hash`` line per account. Mosquitto 2.0 writes
``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`` (101 iterations, 12-byte salt,
64-byte digest); 1.6 and earlier wrote ``$6$<base64 salt>$<base64 SHA-512(password + salt)>``.
Both are read here; new hashes are always ``$7$``.

Every write replaces the file atomically (temporary file in the same directory, ``fsync``,
``rename``), under an advisory lock, keeping the owner, group and mode of the file it replaces
(a new file is ``0600``). The broker rereads the file on ``SIGHUP`` (``LocalBroker.reload``, or
``systemctl reload mosquitto`` in production).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

from controlsvc.broker.errors import InvalidBrokerSetting, PasswordFileError
from controlsvc.files import atomic_write

__all__ = [
    "PBKDF2_ITERATIONS",
    "add_or_update_account",
    "generate_password",
    "hash_password",
    "read_password_file",
    "remove_account",
    "validate_username",
    "verify_password",
    "write_password_file",
    "write_password_hashes",
]

logger = logging.getLogger(__name__)

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the broker reads the count per hash
SALT_BYTES = 12  # mosquitto_passwd's salt length
DIGEST_BYTES = 64  # SHA-512 output length
NEW_FILE_MODE = 0o600  # the broker's password hashes are secrets too
GENERATED_PASSWORD_BYTES = 24  # 32 URL-safe characters, ~192 bits

# A user name must survive the password file (no ':' or line break), the ACL file (no spaces) and
# pattern substitution into topics (no '/', '+', '#'; mosquitto refuses %u for names with + or #).
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
_B64 = r"[A-Za-z0-9+/]+={0,2}"
_PBKDF2_RE = re.compile(rf"\$7\$(?P<iterations>[0-9]+)\$(?P<salt>{_B64})\$(?P<digest>{_B64})")
_SHA512_RE = re.compile(rf"\$6\$(?P<salt>{_B64})\$(?P<digest>{_B64})")


def validate_username(username: str) -> str:
    """Return ``username`` if a password file, the ACL and topic patterns can all hold it."""
    if not isinstance(username, str) or _USERNAME_RE.fullmatch(username) is None:
        raise InvalidBrokerSetting(
            f"broker user name {username!r} is not allowed: use 1-128 characters from"
            " A-Z a-z 0-9 _ . @ - starting with a letter or digit"
        )
    return username


def _validate_password(username: str, password: str) -> None:
    if not isinstance(password, str) or not password:
        raise InvalidBrokerSetting(f"the broker password of {username!r} must not be empty")
    if "\0" in password:
        raise InvalidBrokerSetting(f"the broker password of {username!r} contains a NUL character")


def generate_password() -> str:
    """A random password for a new broker account (URL-safe, 32 characters)."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """A mosquitto 2.0 password hash: ``$7$101$<salt>$<digest>`` (PBKDF2-HMAC-SHA512).

    ``salt`` is random (12 bytes) unless given, which only tests should do.
    """
    _validate_password("this account", password)
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    if iterations < 1:
        raise InvalidBrokerSetting(f"PBKDF2 iterations must be positive, not {iterations}")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, DIGEST_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, password_hash: str) -> bool:
    """True when ``password`` matches a ``$7$`` (PBKDF2) or ``$6$`` (salted SHA-512) hash.

    Raises ``PasswordFileError`` for a hash in neither format.
    """
    encoded = password.encode("utf-8")
    if match := _PBKDF2_RE.fullmatch(password_hash):
        salt, expected = _unb64(match["salt"]), _unb64(match["digest"])
        iterations = int(match["iterations"])
        actual = hashlib.pbkdf2_hmac("sha512", encoded, salt, iterations, len(expected))
        return hmac.compare_digest(actual, expected)
    if match := _SHA512_RE.fullmatch(password_hash):
        salt, expected = _unb64(match["salt"]), _unb64(match["digest"])
        return hmac.compare_digest(hashlib.sha512(encoded + salt).digest(), expected)
    raise PasswordFileError(
        f"unsupported password hash {password_hash[:12]!r}...: expected $7$ (mosquitto 2.0) or"
        " $6$ (mosquitto 1.x)"
    )


def read_password_file(path: Path | str) -> dict[str, str]:
    """The accounts of a password file as ``{username: hash}``, in file order.

    Blank lines and lines starting with ``#`` are skipped. Raises ``PasswordFileError`` for a line
    that is not ``user:hash`` and ``FileNotFoundError`` for a missing file.
    """
    path = Path(path)
    accounts: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password_hash = line.partition(":")
        if not sep or not user or not password_hash:
            raise PasswordFileError(f"{path}:{number}: expected 'username:hash', got {line[:40]!r}")
        if user in accounts:
            raise PasswordFileError(f"{path}:{number}: user {user!r} appears twice")
        accounts[user] = password_hash
    return accounts


def write_password_file(path: Path | str, accounts: Mapping[str, str]) -> None:
    """Write a password file for ``{username: plaintext password}``, replacing any existing one."""
    hashes = {}
    for user, password in accounts.items():
        validate_username(user)
        _validate_password(user, password)
        hashes[user] = hash_password(password)
    with _locked(Path(path)):
        _write_hashes(Path(path), hashes)


def write_password_hashes(path: Path | str, hashes: Mapping[str, str]) -> None:
    """Write a password file from already hashed passwords ``{username: hash}``."""
    for user, password_hash in hashes.items():
        _check_hash_line(user, password_hash)
    with _locked(Path(path)):
        _write_hashes(Path(path), hashes)


def add_or_update_account(path: Path | str, username: str, password: str) -> bool:
    """Set ``username``'s password in the file (created if missing); True if the user is new.

    Other accounts keep their hashes. The running broker sees the change after a reload.
    """
    path = Path(path)
    validate_username(username)
    _validate_password(username, password)
    with _locked(path):
        hashes = read_password_file(path) if path.exists() else {}
        is_new = username not in hashes
        hashes[username] = hash_password(password)
        _write_hashes(path, hashes)
    logger.info("broker account %s %s in %s", username, "added" if is_new else "updated", path)
    return is_new


def remove_account(path: Path | str, username: str) -> bool:
    """Remove ``username`` from the file; True if it was there. A missing file holds nobody.

    On its next reload the broker refuses the account and disconnects its open connections.
    """
    path = Path(path)
    with _locked(path):
        if not path.exists():
            return False
        hashes = read_password_file(path)
        if hashes.pop(username, None) is None:
            return False
        _write_hashes(path, hashes)
    logger.info("broker account %s removed from %s", username, path)
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise PasswordFileError(f"bad base64 in password hash: {exc}") from exc


def _check_hash_line(user: str, password_hash: str) -> None:
    if ":" in user or not user or any(c in user for c in "\r\n"):
        raise InvalidBrokerSetting(f"broker user name {user!r} cannot go in a password file")
    if not (_PBKDF2_RE.fullmatch(password_hash) or _SHA512_RE.fullmatch(password_hash)):
        raise InvalidBrokerSetting(f"the password hash of {user!r} is not a $7$ or $6$ hash")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``<path>.lock`` so concurrent edits never lose one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, NEW_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_hashes(path: Path, hashes: Mapping[str, str]) -> None:
    text = "".join(f"{user}:{password_hash}\n" for user, password_hash in hashes.items())
    atomic_write(path, text, mode=NEW_FILE_MODE)
