"""A recording disk that fills up under a real agent: what it reports is what the files hold.

The agent (``python -m enclosure_agent run``) records the test pattern onto a disk of its own:
a small tmpfs mounted by the test when it runs as root, else a file-size limit (RLIMIT_FSIZE)
on the agent process, which fails writes past it with EFBIG the same way. Once some segments
are closed, the test fills the disk; the agent's next write fails. Every segment file is then
decoded with PyAV: its ``segment_closed`` event reports exactly the frames decoded, and its
sidecar lists only frames the file holds, with their presentation times.
"""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import av.error
import pytest

from enclosure_agent.recorder import read_sidecar, sidecar_path_for
from schemas.enums import Lifecycle
from tests.integration.test_agent_harness import (  # noqa: F401 (fixtures)
    REPO,
    agent_data,
    mosquitto_factory,
    mqtt_client,
    plan,
    segments,
    service_for,
    write_toml,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

EID = "enc-a"
DISK_BYTES = 16 * 1024 * 1024  # several 1 s segments of 160x120 video, and room to spare
FILE_LIMIT_BYTES = 256 * 1024  # without root: the one segment grows past this in a few seconds
FILL_CHUNK = 64 * 1024


def _mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """(recording root, whether it is a real tmpfs that the test fills)."""
    root = tmp_path / "disk"
    mounted = _mount_tmpfs(root)
    try:
        yield root, mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], check=False)


def _fill(root: Path) -> None:
    """Take every free byte of the disk under ``root``."""
    with (root / "filler").open("wb", buffering=0) as handle:
        for size in (FILL_CHUNK, 512):  # then the last partial chunk
            with contextlib.suppress(OSError):  # ENOSPC: full
                while True:
                    handle.write(b"\0" * size)


def _decoded_pts_ms(path: Path) -> list[int]:
    """Presentation times (ms) of the frames PyAV decodes (none if not even a header made it)."""
    try:
        container = av.open(str(path))
    except av.error.InvalidDataError:  # the header never reached the disk
        return []
    with container:
        stream = container.streams.video[0]
        tb = stream.time_base
        assert tb is not None
        return [round(float((frame.pts or 0) * tb) * 1000) for frame in container.decode(stream)]


def test_a_full_disk_reports_the_frames_the_files_hold(
    tmp_path, mosquitto_factory, service_for, small_disk
) -> None:
    root, tmpfs = small_disk
    broker = mosquitto_factory()
    service = service_for(broker, EID)
    data = agent_data(
        tmp_path,
        broker,
        EID,
        broker.accounts[EID],
        camera={"width": 160, "height": 120, "fps": 30},
        recording={
            "root": str(root),
            "disk_reserve_bytes": 0,  # the write error itself, not the reserve check, ends it
            "segment_seconds": 1 if tmpfs else 3600,
        },
    )
    config_file = write_toml(tmp_path / "agent.toml", data)
    limit = None if tmpfs else FILE_LIMIT_BYTES

    def limit_file_size() -> None:  # in the child, before exec
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    log_file = tmp_path / "agent.log"
    with log_file.open("wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "enclosure_agent", "run", "--config", str(config_file)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_file_size,  # noqa: PLW1509 (no threads in the test process here)
        )
    try:
        wait_for(
            lambda: any(s.state is Lifecycle.READY for s in service.states()),
            20,
            message="the agent never became ready",
        )
        service.desired(1, plan("s-full", start_in_s=0, duration_s=300))
        service.event("recording_started", timeout=20)
        if tmpfs:
            wait_for(lambda: len(service.events("segment_closed")) >= 2, 20)
            _fill(root)
        failed = service.event("recording_failed", timeout=60)
        assert failed.session_id == "s-full"
        files = segments(root, "s-full")
        wait_for(
            lambda: len(service.events("segment_closed")) >= len(files),
            20,
            message=lambda: f"{len(files)} files, events {service.events('segment_closed')}",
        )
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait(10)
    closed = {e.data["path"]: e.data for e in service.events("segment_closed")}
    assert set(closed) == {str(f) for f in files}
    for path in files:
        decoded = _decoded_pts_ms(path)
        assert closed[str(path)]["frames"] == len(decoded), path
        rows = read_sidecar(sidecar_path_for(path))
        assert len(rows) <= len(decoded), path
        assert [r.pts_ms for r in rows] == decoded[: len(rows)], path
    assert "Traceback" not in log_file.read_text(errors="replace")
