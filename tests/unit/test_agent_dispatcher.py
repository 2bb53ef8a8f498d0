"""Command dispatch: every command gets one final answer; expired and repeated ones never run."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enclosure_agent import dispatcher as dispatcher_module
from enclosure_agent.config import AgentConfig, validate_config
from enclosure_agent.dispatcher import Dispatcher
from enclosure_agent.errors import CommandRejected
from enclosure_agent.handlers import HANDLERS, Outcome
from enclosure_agent.health import DiskSpace
from enclosure_agent.journal import Journal
from enclosure_agent.link import Inbound
from enclosure_agent.recorder import CapturedFrame
from schemas.commands import Ack
from schemas.enums import AckResult, CommandKind
from schemas.messages import DesiredRecording


class FakeAgent:
    """Just enough agent for the handlers."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.session: str | None = None
        self.free = 10**12
        self.calls: list[tuple[str, Any]] = []
        self.frame: CapturedFrame | None = None

    def now(self) -> datetime:
        return datetime.now(UTC)

    def clock_basis(self) -> str:
        return "by the service's clock (this enclosure's clock is +0.0 s off it)"

    def current_session(self) -> str | None:
        return self.session

    def disk_space(self) -> DiskSpace:
        return DiskSpace(total_bytes=2 * 10**12, free_bytes=self.free)

    def start_recording(self, plan: DesiredRecording) -> None:
        self.calls.append(("start", plan))
        self.session = plan.session_id

    def stop_recording(self) -> None:
        self.calls.append(("stop", self.session))
        self.session = None

    def set_live_view(self, until: datetime | None) -> None:
        self.calls.append(("live", until))

    def latest_frame(self, max_age_s: float) -> CapturedFrame | None:
        return None

    def wait_for_frame(self, timeout_s: float) -> CapturedFrame | None:
        return self.frame

    def rebirth(self) -> None:
        self.calls.append(("rebirth", None))

    def apply_config(self, changes: dict[str, Any]) -> list[str]:
        self.calls.append(("config", changes))
        return ["applied"]

    def request_restart(self) -> None:
        self.calls.append(("restart", None))


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        config = validate_config(
            {
                "agent": {"enclosure_id": "enc-01", "state_dir": str(tmp_path / "state")},
                "broker": {"url": "mqtt://127.0.0.1"},
                "recording": {"root": str(tmp_path / "rec"), "disk_reserve_bytes": 1000},
            }
        )
        self.agent = FakeAgent(config)
        self.journal = Journal(tmp_path / "state" / "journal.json")
        self.acks: list[Ack] = []
        self.done = threading.Event()
        self.dispatcher = Dispatcher(self.agent, self.journal, self._ack, self._post)

    def _ack(self, ack: Ack, inbound: Inbound) -> None:
        self.acks.append(ack)

    def _post(self, task: Any) -> None:
        task()
        self.done.set()

    def send(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        expires_in_s: float = 30,
        command_id: uuid.UUID | None = None,
        expiry_interval_s: int | None = None,
    ) -> uuid.UUID:
        command_id = command_id or uuid.uuid4()
        payload = {
            "id": str(command_id),
            "kind": kind,
            "params": params or {},
            "expires_at": (datetime.now(UTC) + timedelta(seconds=expires_in_s)).isoformat(),
        }
        self.dispatcher.receive(
            Inbound("t", json.dumps(payload).encode(), expiry_interval_s=expiry_interval_s)
        )
        return command_id

    def answers(self, command_id: uuid.UUID) -> list[tuple[AckResult, str | None]]:
        return [(a.result, a.detail) for a in self.acks if a.command_id == command_id]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


START = {"session_id": "s1", "file_prefix": "cage", "duration_s": 60}


def test_every_kind_has_a_handler() -> None:
    assert set(HANDLERS) == set(CommandKind)


def test_ping(h: Harness) -> None:
    cid = h.send("ping")
    (ack,) = h.acks
    assert (ack.command_id, ack.result) == (cid, AckResult.SUCCEEDED)
    assert ack.data is not None
    assert ack.data["pong"] is True


def test_start_then_start_another_is_rejected(h: Harness) -> None:
    h.send("start_recording", START)
    cid = h.send("start_recording", {**START, "session_id": "s2"})
    assert h.answers(cid) == [
        (AckResult.REJECTED, "already recording session 's1'; stop it before starting 's2'")
    ]
    assert [c for c, _ in h.agent.calls] == ["start"]


def test_stop_when_idle_is_rejected(h: Harness) -> None:
    cid = h.send("stop_recording")
    assert h.answers(cid) == [(AckResult.REJECTED, "not recording")]


def test_start_below_the_disk_reserve_is_rejected_with_the_figures(h: Harness) -> None:
    h.agent.free = 999
    cid = h.send("start_recording", START)
    ((result, detail),) = h.answers(cid)
    assert result is AckResult.REJECTED
    assert detail is not None
    assert "999 bytes free" in detail
    assert "reserve 1000 bytes" in detail
    assert h.agent.calls == []


def test_expired_commands_are_not_executed(h: Harness) -> None:
    cid = h.send("start_recording", START, expires_in_s=-1)
    ((result, detail),) = h.answers(cid)
    assert result is AckResult.EXPIRED
    assert detail is not None
    assert "not executed" in detail
    assert h.agent.calls == []


def test_expiry_is_judged_by_the_service_clock(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The enclosure's own clock runs 10 minutes ahead; ``agent.now()`` is the service's time,
    and the dispatcher must not read the local clock itself."""
    monkeypatch.setattr(
        dispatcher_module,
        "utc_now",
        lambda: datetime.now(UTC) + timedelta(minutes=10),
        raising=False,
    )
    cid = h.send("rebirth", expires_in_s=30)
    assert h.answers(cid)[0][0] is AckResult.SUCCEEDED
    late = h.send("rebirth", expires_in_s=-1)
    ((result, detail),) = h.answers(late)
    assert result is AckResult.EXPIRED
    assert "by the service's clock" in (detail or "")


def test_mqtt_message_expiry_counts_too(h: Harness) -> None:
    cid = uuid.uuid4()
    payload = json.dumps(
        {
            "id": str(cid),
            "kind": "rebirth",
            "expires_at": (datetime.now(UTC) + timedelta(seconds=30)).isoformat(),
        }
    ).encode()
    h.dispatcher.receive(
        Inbound("t", payload, expiry_interval_s=1, received_monotonic=0.0)  # long ago
    )
    assert h.answers(cid)[0][0] is AckResult.EXPIRED
    assert h.agent.calls == []


def test_unknown_kind_is_rejected(h: Harness) -> None:
    cid = h.send("self_destruct")
    ((result, detail),) = h.answers(cid)
    assert result is AckResult.REJECTED
    assert detail is not None
    assert "cmd.kind" in detail


def test_bad_params_are_rejected_naming_the_field(h: Harness) -> None:
    cid = h.send("start_recording", {**START, "duration_s": -5})
    ((result, detail),) = h.answers(cid)
    assert result is AckResult.REJECTED
    assert detail is not None
    assert detail.startswith("params.duration_s")


def test_malformed_with_an_id_is_rejected_without_one_is_only_logged(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    cid = uuid.uuid4()
    h.dispatcher.receive(Inbound("t", json.dumps({"id": str(cid), "kind": 5}).encode()))
    assert h.answers(cid)[0][0] is AckResult.REJECTED
    h.dispatcher.receive(Inbound("t", b"\xff not json"))
    h.dispatcher.receive(Inbound("t", b'{"kind": "ping"}'))
    assert len(h.acks) == 1
    assert "malformed command without a readable id" in caplog.text


def test_a_redelivered_command_is_answered_again_but_not_executed(h: Harness) -> None:
    cid = h.send("start_recording", START)
    h.send("start_recording", START, command_id=cid)
    assert h.answers(cid) == [(AckResult.SUCCEEDED, None)] * 2
    assert [c for c, _ in h.agent.calls] == ["start"]


def test_executed_ids_survive_a_restart(h: Harness, tmp_path: Path) -> None:
    cid = h.send("rebirth")
    again = Harness(tmp_path)
    again.send("rebirth", command_id=cid)
    assert again.agent.calls == []
    assert again.answers(cid)[0][0] is AckResult.SUCCEEDED


def test_handler_errors_become_failed(h: Harness) -> None:
    def broken(agent: Any, params: Any) -> Outcome:
        raise RuntimeError("boom")

    def refusing(agent: Any, params: Any) -> Outcome:
        raise CommandRejected("not now")

    h.dispatcher._handlers = {CommandKind.PING: broken, CommandKind.REBIRTH: refusing}
    assert h.answers(h.send("ping")) == [(AckResult.FAILED, "RuntimeError: boom")]
    assert h.answers(h.send("rebirth")) == [(AckResult.REJECTED, "not now")]
    assert h.answers(h.send("snapshot"))[0] == (AckResult.REJECTED, "snapshot is not supported")


def test_snapshot_waits_for_a_frame_accepted_then_succeeded(h: Harness) -> None:
    image = np.full((48, 64, 3), 200, dtype=np.uint8)
    h.agent.frame = CapturedFrame.now(image, 7)
    cid = h.send("snapshot")
    assert h.done.wait(10)
    (first, final) = h.acks
    assert first.result is AckResult.ACCEPTED
    assert final.result is AckResult.SUCCEEDED
    assert final.data is not None
    jpeg = base64.b64decode(final.data["jpeg_base64"])
    assert jpeg[:2] == b"\xff\xd8"
    assert final.data["frame_index"] == 7
    assert h.journal.command(str(cid)) is not None


def test_snapshot_without_frames_fails(h: Harness) -> None:
    cid = h.send("snapshot")
    assert h.done.wait(10)
    assert h.answers(cid)[-1][0] is AckResult.FAILED


def test_live_view_config_restart(h: Harness) -> None:
    h.send("start_live_view", {"duration_s": 20})
    h.send("stop_live_view")
    h.send("set_config", {"status_interval_s": 2, "crf": 20})
    h.send("restart_agent")
    kinds = [c for c, _ in h.agent.calls]
    assert kinds == ["live", "live", "config", "restart"]
    assert h.agent.calls[1][1] is None
    assert h.agent.calls[2][1] == {"status_interval_s": 2, "crf": 20}
    assert all(a.result is AckResult.SUCCEEDED for a in h.acks)
    cid = h.send("set_config", {})
    assert h.answers(cid)[0][0] is AckResult.REJECTED
