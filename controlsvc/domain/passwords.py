"""Password hashing (argon2id, rehashed on login when the parameters change) and the policy.

Hashes imported from JABS (``jabs-sha512$<salt>$<hex>``: SHA-512 of password + salt) verify
too, and are replaced by argon2id at the first login (``needs_rehash``).

Policy: at least `MIN_LENGTH` characters, at most `MAX_LENGTH`, and not one of the ~10,000 most
common passwords (`data/common-passwords.txt`, compared case-insensitively).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from controlsvc.domain.errors import InvalidInput

__all__ = [
    "JABS_PREFIX",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "check_policy",
    "hash_password",
    "jabs_hash",
    "is_common",
    "needs_rehash",
    "verify_password",
    "waste_time",
]

MIN_LENGTH = 8
# argon2 hashes any length; a bound keeps one request from hashing megabytes.
MAX_LENGTH = 1024
COMMON_PASSWORDS_FILE = "common-passwords.txt"

# argon2id with the RFC 9106 "low memory" profile (argon2-cffi's defaults). Tests swap this for a
# cheap hasher; `needs_rehash` then upgrades stored hashes on the next login.
HASHER = PasswordHasher()


JABS_PREFIX = "jabs-sha512$"


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def jabs_hash(salt: str, hexdigest: str) -> str:
    """The stored form of a JABS password hash (only the importer makes these)."""
    return f"{JABS_PREFIX}{salt}${hexdigest.lower()}"


def _verify_jabs(password_hash: str, password: str) -> bool:
    salt, _, expected = password_hash.removeprefix(JABS_PREFIX).rpartition("$")
    actual = hashlib.sha512((password + salt).encode("utf-8", "surrogatepass")).hexdigest()
    return hmac.compare_digest(actual, expected)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; False for a mismatch and for an empty or corrupt hash."""
    if not password_hash:
        return False
    if password_hash.startswith(JABS_PREFIX):
        return _verify_jabs(password_hash, password)
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current hasher's."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash(parameters: str) -> str:
    return HASHER.hash(secrets.token_hex(16))


def waste_time(password: str) -> None:
    """Spend as long as a real verification, so unknown accounts cannot be told by timing."""
    params = HASHER
    verify_password(
        _dummy_hash(f"{params.time_cost}/{params.memory_cost}/{params.parallelism}"), password
    )


@functools.cache
def _common_passwords() -> frozenset[str]:
    text = (
        resources.files("controlsvc")
        .joinpath("data", COMMON_PASSWORDS_FILE)
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def is_common(password: str) -> bool:
    return password.strip().lower() in _common_passwords()


def check_policy(password: str, *, field: str = "password") -> None:
    """Raise InvalidInput naming `field` when the password is too short, too long or common."""
    label = "the " + field.replace("_", " ")
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"{label} must have at least {MIN_LENGTH} characters", field=field)
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"{label} must have at most {MAX_LENGTH} characters", field=field)
    if not password.strip():
        raise InvalidInput(f"{label} must not be only white space", field=field)
    if is_common(password):
        raise InvalidInput(
            f"{label} is one of the most common passwords; choose one that is harder to guess",
            field=field,
        )
