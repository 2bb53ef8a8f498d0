"""Writing a file atomically, with a mode of our choosing: the one home of the service's
0600 writers (config files, the broker's password file, ACL and config, the demo's and the
embedded broker's credentials, ``jaxmba-ctl``'s stored logins).

The text goes to a temporary file in the same directory, created with the mode before any byte
is written, flushed to disk, then renamed over the target and the directory synced: a crash
leaves the old file or the new one, never half of one, and never a moment where a secret is
readable by others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]

logger = logging.getLogger(__name__)


def atomic_write(
    path: Path, text: str, *, mode: int, keep_existing: bool = True, prefix: str | None = None
) -> None:
    """Replace ``path`` with ``text`` atomically.

    With ``keep_existing`` a file being replaced keeps its owner, group and mode (without any
    access for others), so a password file that the ``mosquitto`` group may read stays readable
    to the broker; a new file gets ``mode``. Without it the file always gets ``mode``.
    ``prefix`` names the temporary file (default ``.{name}.``, suffix ``.tmp``).
    """
    owner: tuple[int, int] | None = None
    if keep_existing:
        try:
            st = path.stat()
        except FileNotFoundError:
            pass
        else:
            mode = stat.S_IMODE(st.st_mode) & 0o770
            owner = (st.st_uid, st.st_gid)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}." if prefix is None else prefix, suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(handle.fileno(), *owner)
                except PermissionError:
                    logger.warning(
                        "cannot keep owner %d:%d of %s (not permitted); the new file belongs"
                        " to %d:%d",
                        owner[0],
                        owner[1],
                        path,
                        os.geteuid(),
                        os.getegid(),
                    )
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
