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

from controlsvc.broker import LocalBroker
from controlsvc.domain.enclosure_state import derive_state
from enclosure_agent.recorder import read_sidecar, sidecar_path_for
from schemas.enums import EnclosureState, Lifecycle
from schemas.events import Event
from tests.integration.test_agent_harness import (  # noqa: F401 (fixtures)
    REPO,
    Service,
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
    where.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The recording root: a real tmpfs that the test fills (as root), else a plain directory."""
    root = tmp_path / "disk"
    mounted = _mount_tmpfs(root)
    try:
        yield root
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


class DiskAgent:
    """A real agent recording onto the small disk, and the service's view of its topics."""

    def __init__(self, tmp_path: Path, broker: LocalBroker, service: Service, disk: Path) -> None:
        self.root, self.tmpfs = disk, disk.is_mount()
        self.service = service
        data = agent_data(
            tmp_path,
            broker,
            EID,
            broker.accounts[EID],
            camera={"width": 160, "height": 120, "fps": 30},
            recording={
                "root": str(disk),
                "disk_reserve_bytes": 0,  # the write error itself, not the reserve, ends it
                "disk_check_interval_s": 0.5,
                "segment_seconds": 1 if self.tmpfs else 3600,
            },
        )
        config_file = write_toml(tmp_path / "agent.toml", data)
        limit = None if self.tmpfs else FILE_LIMIT_BYTES

        def limit_file_size() -> None:  # in the child, before exec
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        self.log_file = tmp_path / "agent.log"
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "enclosure_agent", "run", "--config", str(config_file)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit_file_size,  # noqa: PLW1509 (the test starts no threads first)
            )

    def record_until_the_disk_is_full(self, session_id: str) -> Event:
        """Record; once two segments are closed, fill the disk; the ``recording_failed``."""
        service = self.service
        wait_for(
            lambda: any(s.state is Lifecycle.READY for s in service.states()),
            20,
            message="the agent never became ready",
        )
        service.desired(1, plan(session_id, start_in_s=0, duration_s=300))
        service.event("recording_started", timeout=20)
        if self.tmpfs:
            wait_for(lambda: len(service.events("segment_closed")) >= 2, 20)
            _fill(self.root)
        return service.event("recording_failed", timeout=60)

    def close(self) -> str:
        """Stop the agent; its log."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        return self.log_file.read_text(errors="replace")


@pytest.fixture
def disk_agent(tmp_path, mosquitto_factory, service_for, small_disk) -> Iterator[DiskAgent]:
    broker = mosquitto_factory()
    agent = DiskAgent(tmp_path, broker, service_for(broker, EID), small_disk)
    try:
        yield agent
    finally:
        agent.close()


def test_a_full_disk_reports_the_frames_the_files_hold(disk_agent: DiskAgent) -> None:
    service = disk_agent.service
    failed = disk_agent.record_until_the_disk_is_full("s-full")
    assert failed.session_id == "s-full"
    files = segments(disk_agent.root, "s-full")
    wait_for(
        lambda: len(service.events("segment_closed")) >= len(files),
        20,
        message=lambda: f"{len(files)} files, events {service.events('segment_closed')}",
    )
    log = disk_agent.close()
    closed = {e.data["path"]: e.data for e in service.events("segment_closed")}
    assert set(closed) == {str(f) for f in files}
    for path in files:
        decoded = _decoded_pts_ms(path)
        assert closed[str(path)]["frames"] == len(decoded), path
        rows = read_sidecar(sidecar_path_for(path))
        assert len(rows) <= len(decoded), path
        assert [r.pts_ms for r in rows] == decoded[: len(rows)], path
    assert "Traceback" not in log


def test_the_enclosure_is_healthy_again_once_the_disk_is(disk_agent: DiskAgent) -> None:
    if not disk_agent.tmpfs:
        pytest.skip("freeing the disk needs the tmpfs (run as root); a file-size limit stays")
    service = disk_agent.service
    disk_agent.record_until_the_disk_is_full("s-heal")
    faulty = service.status(lambda s: s.recording is None and s.last_error is not None)
    assert derive_state(Lifecycle.READY, faulty.model_dump(mode="json"))[0] is EnclosureState.ERROR
    (disk_agent.root / "filler").unlink()
    healthy = service.status(lambda s: s.seq > faulty.seq and s.last_error is None, timeout=20)
    assert derive_state(Lifecycle.READY, healthy.model_dump(mode="json"))[0] is EnclosureState.IDLE
    # the failed session is not started again by itself: the intent has to change
    assert healthy.recording is None
    assert "Traceback" not in disk_agent.close()
