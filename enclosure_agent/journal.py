"""The agent's small persistent state (``<state_dir>/journal.json``), written atomically.

It holds what must survive ``kill -9``:

* the intent (``reconciler.Intent``): what to record and until when, and the desired version;
* the recording in progress: session, segment file and the capture time of the latest frame
  written (refreshed every status interval), so a restart can report the gap in
  ``recording_resumed``;
* the ids of recently executed commands with their final answer, so a QoS 1 redelivery after
  a restart is answered again but not executed twice;
* the last measured offset of the local clock from the service's, assumed after a restart
  until a fresh sample arrives (a skewed enclosure must not end its recording on restart).

Each save writes a temporary file, fsyncs it and renames it over the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections import OrderedDict
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from enclosure_agent.reconciler import Intent
from schemas.enums import AckResult
from schemas.types import UtcDatetime

__all__ = ["CommandRecord", "Journal", "JournalData", "RecordingMark"]

log = logging.getLogger(__name__)

RECENT_COMMANDS = 256  # ids remembered: far more than a broker redelivers after a short gap
RECENT_SEGMENTS = 64  # closed segments remembered per run: more than cut between two saves
FILE_MODE = 0o600


class RecordingMark(BaseModel):
    """The recording in progress, as last saved."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    session_id: str
    file_prefix: str
    started_at: UtcDatetime
    file: str | None = None
    last_frame_at: UtcDatetime | None = None
    closed: list[str] = Field(default_factory=list, description="Segments reported closed.")


class CommandRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    result: AckResult
    detail: str | None = None


class JournalData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    intent: Intent = Field(default_factory=Intent)
    recording: RecordingMark | None = None
    commands: list[CommandRecord] = Field(default_factory=list)
    clock_offset_s: float | None = Field(
        default=None, description="Local - service clock offset last measured, in s."
    )


class Journal:
    """Loads and saves ``journal.json``; a corrupt file is kept aside and a fresh one started."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = self._load()
        self._commands: OrderedDict[str, CommandRecord] = OrderedDict(
            (record.id, record) for record in self.data.commands
        )

    def _load(self) -> JournalData:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return JournalData()
        try:
            return JournalData.model_validate_json(text)
        except ValidationError as exc:
            aside = self.path.with_suffix(".corrupt")
            log.error(  # noqa: TRY400 (the reason is in the message)
                "journal %s is unreadable (%s); kept as %s", self.path, exc, aside
            )
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            return JournalData()

    def save(self) -> None:
        self.data.commands = list(self._commands.values())
        payload = self.data.model_dump_json(indent=1).encode("utf-8")
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".journal-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- intent -----------------------------------------------------------------------------------
    @property
    def intent(self) -> Intent:
        return self.data.intent

    def set_intent(self, intent: Intent) -> None:
        if intent != self.data.intent:
            self.data.intent = intent
            self.save()

    # -- the clock offset -------------------------------------------------------------------------
    @property
    def clock_offset_s(self) -> float | None:
        return self.data.clock_offset_s

    def set_clock_offset(self, offset_s: float | None) -> None:
        if offset_s != self.data.clock_offset_s:
            self.data.clock_offset_s = offset_s
            self.save()

    # -- the recording in progress ----------------------------------------------------------------
    @property
    def recording(self) -> RecordingMark | None:
        return self.data.recording

    def set_recording(self, mark: RecordingMark | None) -> None:
        self.data.recording = mark
        self.save()

    def touch_recording(self, file: str | None, last_frame_at: datetime | None) -> None:
        """Refresh the current segment and the latest frame time (every status interval)."""
        mark = self.data.recording
        if mark is None or (mark.file == file and mark.last_frame_at == last_frame_at):
            return
        self.data.recording = mark.model_copy(
            update={"file": file or mark.file, "last_frame_at": last_frame_at or mark.last_frame_at}
        )
        self.save()

    def segment_reported(self, path: str) -> None:
        """A ``segment_closed`` event for ``path`` is in the outbox."""
        mark = self.data.recording
        if mark is None:
            return
        closed = [*mark.closed, path][-RECENT_SEGMENTS:]
        self.data.recording = mark.model_copy(update={"closed": closed})
        self.save()

    # -- executed commands ------------------------------------------------------------------------
    def command(self, command_id: str) -> CommandRecord | None:
        return self._commands.get(command_id)

    def remember_command(self, command_id: str, result: AckResult, detail: str | None) -> None:
        self._commands[command_id] = CommandRecord(id=command_id, result=result, detail=detail)
        self._commands.move_to_end(command_id)
        while len(self._commands) > RECENT_COMMANDS:
            self._commands.popitem(last=False)
        self.save()
