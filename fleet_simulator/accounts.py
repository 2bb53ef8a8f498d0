"""Broker accounts of simulated enclosures: ids, passwords, and putting them where they belong.

Each simulated enclosure has its own account (user name = enclosure id = client id) and password,
as a real one has. ``fleet_accounts(2000)`` makes ``sim-0001`` ... ``sim-2000`` with random
passwords; ``install_accounts`` gives them to a ``LocalBroker`` (before or after it starts),
``add_to_password_file`` to any mosquitto password file, and ``write_accounts_file`` keeps the
plaintext for the simulator's CLI (``eid:password`` lines, mode 0600).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from controlsvc.broker.password_file import (
    generate_password,
    hash_password,
    read_password_file,
    write_password_hashes,
)
from controlsvc.files import atomic_write
from fleet_simulator.errors import AccountsError
from schemas.ids import validate_enclosure_id

__all__ = [
    "DEFAULT_ID_PREFIX",
    "add_to_password_file",
    "fleet_accounts",
    "fleet_ids",
    "install_accounts",
    "read_accounts_file",
    "write_accounts_file",
]

logger = logging.getLogger(__name__)

DEFAULT_ID_PREFIX = "sim"
MIN_ID_DIGITS = 4  # sim-0001: ids sort in creation order up to 9,999 enclosures
ACCOUNTS_FILE_MODE = 0o600  # plaintext passwords


class AccountBroker(Protocol):
    """What ``install_accounts`` needs of a ``LocalBroker``."""

    @property
    def running(self) -> bool: ...

    @property
    def accounts(self) -> dict[str, str]: ...

    def set_account(self, user: str, password: str, *, reload: bool = True) -> None: ...

    def reload(self) -> None: ...


def fleet_ids(count: int, id_prefix: str = DEFAULT_ID_PREFIX, *, first: int = 1) -> list[str]:
    """``count`` enclosure ids ``{id_prefix}-0001``, ``{id_prefix}-0002``, ... (valid ids only)."""
    if count < 0:
        raise ValueError(f"count must not be negative, not {count}")
    digits = max(MIN_ID_DIGITS, len(str(first + count - 1)))
    ids = [f"{id_prefix}-{n:0{digits}d}" for n in range(first, first + count)]
    for eid in ids[:1] + ids[-1:]:
        validate_enclosure_id(eid)  # the prefix decides; checking both ends checks them all
    return ids


def fleet_accounts(
    count: int, id_prefix: str = DEFAULT_ID_PREFIX, *, first: int = 1
) -> dict[str, str]:
    """``{eid: password}`` for ``count`` simulated enclosures, each with its own random password."""
    return {eid: generate_password() for eid in fleet_ids(count, id_prefix, first=first)}


def add_to_password_file(path: Path | str, accounts: Mapping[str, str]) -> int:
    """Add or replace ``accounts`` in a mosquitto password file in one atomic write.

    Other accounts keep their hashes; the file is created if missing. Returns how many accounts
    were new. A running broker sees them after a reload (SIGHUP).
    """
    path = Path(path)
    hashes = read_password_file(path) if path.exists() else {}
    new = sum(1 for user in accounts if user not in hashes)
    for user, password in accounts.items():
        hashes[user] = hash_password(password)
    write_password_hashes(path, hashes)
    logger.info("%d simulated enclosure accounts written to %s (%d new)", len(accounts), path, new)
    return new


def install_accounts(broker: AccountBroker, accounts: Mapping[str, str]) -> None:
    """Give ``accounts`` to a ``LocalBroker``.

    Before ``start()`` they only join the accounts it writes when starting. On a running broker
    every account is added (each ``set_account`` rewrites the password file, so thousands take a
    few seconds) and the broker is reloaded once at the end.
    """
    for user, password in accounts.items():
        broker.set_account(user, password, reload=False)
    if broker.running:
        broker.reload()


def write_accounts_file(path: Path | str, accounts: Mapping[str, str]) -> None:
    """Write ``eid:password`` lines (mode 0600): the simulator CLI's ``--accounts`` file."""
    lines = []
    for eid, password in accounts.items():
        validate_enclosure_id(eid)
        if not password or any(c in password for c in "\r\n"):
            raise AccountsError(f"the password of {eid} is empty or contains a line break")
        lines.append(f"{eid}:{password}\n")
    atomic_write(Path(path), "".join(lines), mode=ACCOUNTS_FILE_MODE)


def read_accounts_file(path: Path | str) -> dict[str, str]:
    """Read ``eid:password`` lines; blank lines and ``#`` comments are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AccountsError(f"{path}: cannot be read ({exc.strerror})") from exc
    accounts: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        eid, sep, password = line.partition(":")
        if not sep or not password:
            raise AccountsError(f"{path}:{number}: expected 'enclosure-id:password'")
        try:
            validate_enclosure_id(eid)
        except ValueError as exc:
            raise AccountsError(f"{path}:{number}: {exc}") from None
        if eid in accounts:
            raise AccountsError(f"{path}:{number}: {eid} appears twice")
        accounts[eid] = password
    return accounts
