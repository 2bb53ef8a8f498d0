"""``sessions create|list|show|cancel|archive|watch``: recording sessions across enclosures.

``watch`` draws one progress bar per enclosure (recorded seconds of the duration). It re-reads
the session whenever ``GET /api/events`` says it changed (``session.*`` events of this session),
and at least every ``REFRESH_S`` in case the stream is away; it ends when the session finishes,
with exit code 0 for ``completed`` and 1 otherwise.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from datetime import datetime
from typing import Any

import click
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from controlsvc.ctl import output
from controlsvc.ctl.api_client import ApiClient
from controlsvc.ctl.context import CtlContext, json_option, pass_ctl
from controlsvc.ctl.errors import CtlError
from controlsvc.ctl.output import dig, human_bytes, human_seconds, local_time, text
from controlsvc.ctl.progress import enclosure_text, lost_text, progress_text, state_text
from controlsvc.ctl.sse import follow
from schemas.enums import SessionEnclosureStatus, SessionStatus
from schemas.ids import validate_enclosure_id

__all__ = ["parse_duration", "sessions"]

REFRESH_S = 5.0  # re-read the session this often even without events
SESSION_KINDS = ("session.progress", "session.state")
FINISHED = frozenset(
    {SessionStatus.COMPLETED, SessionStatus.COMPLETED_WITH_FAILURES, SessionStatus.CANCELED}
)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


def parse_duration(value: str) -> float:
    """``3600``, ``90s``, ``10m``, ``1h30m``, ``2d`` -> seconds; ``ValueError`` otherwise."""
    raw = value.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_RE.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match[1]) * _UNIT_S[match[2]]
            pos = match.end()
        if pos != len(raw) or not raw:
            raise ValueError(
                f"{value!r} is not a duration (e.g. 3600, 90s, 10m, 1h30m, 2d)"
            ) from None
    if seconds <= 0:
        raise ValueError(f"duration must be positive, not {value!r}")
    return seconds


class DurationType(click.ParamType[float, Any]):
    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class TargetType(click.ParamType[dict[str, str], Any]):
    """``EID:PREFIX``: an enclosure and the first part of its file names."""

    name = "EID:PREFIX"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, str]:
        eid, sep, prefix = str(value).partition(":")
        if not sep or not prefix:
            self.fail(f"{value!r} is not EID:PREFIX (e.g. --enclosure enc-01:mouse1)", param, ctx)
        try:
            validate_enclosure_id(eid)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return {"id": eid, "file_prefix": prefix}


@click.group()
def sessions() -> None:
    """Recording sessions: create, list, show, cancel, archive, watch."""


@sessions.command("create")
@click.option("--name", required=True, help="A name for people.")
@click.option(
    "--enclosure",
    "targets",
    type=TargetType(),
    multiple=True,
    required=True,
    help="An enclosure and its file prefix, EID:PREFIX; repeat for each enclosure.",
)
@click.option("--duration", type=DurationType(), required=True, help="3600, 90s, 10m, 1h30m, 2d.")
@click.option("--fps", type=click.IntRange(1, 120), default=None, help="Target frames per second.")
@click.option("--hourly", is_flag=True, help="Cut a segment at every UTC hour.")
@click.option("--segment-minutes", type=click.IntRange(1, 1440), help="Cut every M minutes.")
@click.option("--filter", "apply_filter", is_flag=True, help="Apply the image denoise filter.")
@click.option(
    "--start-at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Start later (ISO 8601; local time unless an offset is given).",
)
@click.option("--notes", help="Free notes.")
@click.option("--allow-offline", is_flag=True, help="Accept lost or offline enclosures.")
@json_option
@pass_ctl
def sessions_create(
    ctl: CtlContext,
    name: str,
    targets: tuple[dict[str, str], ...],
    duration: float,
    fps: int | None,
    hourly: bool,
    segment_minutes: int | None,
    apply_filter: bool,
    start_at: datetime | None,
    notes: str | None,
    allow_offline: bool,
) -> None:
    """Start a recording session on one or more enclosures."""
    if not duration.is_integer():
        raise click.BadParameter(f"{duration:g} s: give whole seconds", param_hint="--duration")
    if hourly and segment_minutes is not None:
        raise click.UsageError("choose --hourly or --segment-minutes, not both")
    seen = [t["id"] for t in targets]
    duplicates = sorted({e for e in seen if seen.count(e) > 1})
    if duplicates:
        raise click.UsageError(f"enclosure given twice: {', '.join(duplicates)}")
    body: dict[str, Any] = {
        "name": name,
        "enclosures": list(targets),
        "duration_s": int(duration),
        "fragment_hourly": hourly,
        "apply_filter": apply_filter,
        "allow_offline": allow_offline,
    }
    if fps is not None:
        body["target_fps"] = fps
    if segment_minutes is not None:
        body["segment_minutes"] = segment_minutes
    if start_at is not None:
        body["start_at"] = (start_at if start_at.tzinfo else start_at.astimezone()).isoformat()
    if notes:
        body["notes"] = notes
    created = ctl.client().post("/api/sessions", body)
    if ctl.as_json:
        output.print_json(created)
        return
    output.console.print(
        f"Session {created.get('id')} ({name}) {text(created.get('status'))} on "
        f"{len(targets)} enclosure(s); follow it with: "
        f"jaxmba-ctl sessions watch {created.get('id')}"
    )


def _enclosures_of(session: dict[str, Any]) -> list[dict[str, Any]]:
    items = session.get("enclosures")
    return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []


def _eid(item: dict[str, Any]) -> str:
    return str(item.get("enclosure_id") or item.get("id") or "?")


def _duration(session: dict[str, Any]) -> float | None:
    value = session.get("duration_s")
    return float(value) if isinstance(value, int | float) else None


@sessions.command("list")
@click.option("--status", type=click.Choice([s.value for s in SessionStatus]), help="Only this.")
@click.option("--archived", is_flag=True, help="Only archived sessions.")
@click.option("--all", "everything", is_flag=True, help="Archived and not archived sessions.")
@json_option
@pass_ctl
def sessions_list(ctl: CtlContext, status: str | None, archived: bool, everything: bool) -> None:
    """List sessions (not archived ones unless asked), newest first."""
    if archived and everything:
        raise click.UsageError("choose --archived or --all, not both")
    params: dict[str, Any] = {"status": status}
    if everything:
        params["archived"] = ""
    elif archived:
        params["archived"] = "true"
    items = ctl.client().get_all("/api/sessions", **params)
    if ctl.as_json:
        output.print_json(items)
        return
    if not items:
        output.err_console.print("No sessions.")
        return
    output.print_table(
        ["ID", "NAME", "STATUS", "START", "DURATION", "ENCLOSURES", "ARCHIVED"],
        [
            [
                text(s.get("id")),
                text(s.get("name")),
                text(s.get("status")),
                local_time(s.get("started_at") or s.get("start_at")),
                human_seconds(d) if (d := _duration(s)) is not None else "-",
                _state_counts(s),
                "yes" if s.get("archived") else "no",
            ]
            for s in items
        ],
    )


def _state_counts(session: dict[str, Any]) -> str:
    counts = session.get("enclosure_states")
    if not isinstance(counts, dict) or not counts:
        return str(len(_enclosures_of(session)) or "-")
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _show(session: dict[str, Any]) -> None:
    keys = [
        ("id", "id"),
        ("name", "name"),
        ("status", "status"),
        ("start", "start_at"),
        ("started", "started_at"),
        ("ends", "end_at"),
        ("finished", "finished_at"),
        ("fps", "target_fps"),
        ("segment minutes", "segment_minutes"),
        ("hourly", "fragment_hourly"),
        ("filter", "apply_filter"),
        ("notes", "notes"),
        ("created", "created_at"),
        ("archived", "archived"),
    ]
    pairs = []
    for label, key in keys:
        value = session.get(key)
        if value is None:
            continue
        pairs.append((label, local_time(value) if key.endswith("_at") else text(value)))
    if (d := _duration(session)) is not None:
        pairs.insert(3, ("duration", human_seconds(d)))
    totals = session.get("totals")
    if isinstance(totals, dict):
        pairs.append(
            (
                "totals",
                f"{progress_text(totals)}, {human_bytes(totals.get('bytes'))}, "
                f"{text(totals.get('segments'))} segments, "
                f"{human_seconds(float(totals.get('gap_s') or 0))} gaps",
            )
        )
    output.print_pairs(pairs, title=f"Session {text(session.get('id'))}")
    rows = [
        [
            enclosure_text(e),
            text(e.get("file_prefix")),
            state_text(e),
            human_seconds(float(dig(e, "progress", "recorded_s") or 0)),
            text(dig(e, "progress", "frames")),
            text(dig(e, "progress", "basis")),
            text(e.get("segments")),
            human_seconds(float(e.get("gap_s") or 0)),
            "; ".join(x for x in (lost_text(e), e.get("message") or "") if x) or "-",
        ]
        for e in _enclosures_of(session)
    ]
    if rows:
        output.console.print()
        output.print_table(
            [
                "ENCLOSURE",
                "PREFIX",
                "STATE",
                "RECORDED",
                "FRAMES",
                "FIGURES",
                "SEGMENTS",
                "GAPS",
                "MESSAGE",
            ],
            rows,
        )


@sessions.command("show")
@click.argument("session_id")
@json_option
@pass_ctl
def sessions_show(ctl: CtlContext, session_id: str) -> None:
    """A session with the progress of each enclosure."""
    session = ctl.client().get(f"/api/sessions/{session_id}")
    if ctl.as_json:
        output.print_json(session)
    else:
        _show(session)


@sessions.command("cancel")
@click.argument("session_id")
@click.option("--enclosure", help="Cancel only this enclosure of the session.")
@json_option
@pass_ctl
def sessions_cancel(ctl: CtlContext, session_id: str, enclosure: str | None) -> None:
    """Cancel a session (or one enclosure of it); canceling a finished session is an error."""
    if enclosure:
        try:
            validate_enclosure_id(enclosure)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--enclosure") from exc
        path = f"/api/sessions/{session_id}/enclosures/{enclosure}/cancel"
    else:
        path = f"/api/sessions/{session_id}/cancel"
    result = ctl.client().post(path)
    if ctl.as_json:
        output.print_json(result)
    else:
        what = f"enclosure {enclosure} of session" if enclosure else "session"
        output.console.print(f"Canceled {what} {session_id}.")


@sessions.command("archive")
@click.argument("session_id")
@json_option
@pass_ctl
def sessions_archive(ctl: CtlContext, session_id: str) -> None:
    """Archive a finished session (hidden from the default list)."""
    result = ctl.client().post(f"/api/sessions/{session_id}/archive")
    if ctl.as_json:
        output.print_json(result)
    else:
        output.console.print(f"Archived session {session_id}.")


# -- watch ---------------------------------------------------------------------------------------
def _listen(
    client: ApiClient, session_id: str, wake: queue.Queue[str], stop: threading.Event
) -> None:
    """Background thread: put a wake-up on ``wake`` for every event of this session."""
    try:
        for event in follow(client, kinds=SESSION_KINDS):
            if stop.is_set():
                return
            record = event.record()
            if str(record.get("session_id") or dig(record, "data", "session_id")) == session_id:
                wake.put(event.event)
    except CtlError as exc:  # the bars still move with the periodic re-read
        wake.put(f"stream: {exc.message}")


def _finished(session: dict[str, Any]) -> bool:
    try:
        return SessionStatus(str(session.get("status"))) in FINISHED
    except ValueError:
        return False


def _bar_state(item: dict[str, Any], total: float, fetched: float) -> tuple[float, str]:
    recorded = float(dig(item, "progress", "recorded_s") or item.get("recorded_s") or 0)
    status = str(item.get("state") or "?")
    if status == SessionEnclosureStatus.RECORDING.value:
        recorded += time.monotonic() - fetched  # keeps moving between updates
    return min(recorded, total), status


@sessions.command("watch")
@click.argument("session_id")
@pass_ctl
@click.pass_context
def sessions_watch(ctx: click.Context, ctl: CtlContext, session_id: str) -> None:
    """Live per-enclosure progress until the session finishes (exit 0 when completed)."""
    client = ctl.client()
    session = client.get(f"/api/sessions/{session_id}")
    fetched = time.monotonic()
    total = _duration(session) or 1.0
    wake: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    listener = threading.Thread(
        target=_listen,
        args=(ApiClient(ctl.url, ctl.store, timeout=ctl.timeout), session_id, wake, stop),
        name="jaxmba-ctl-events",
        daemon=True,
    )
    progress = Progress(
        TextColumn("{task.fields[eid]:<16}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[status]:<10}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[message]}"),
        console=output.console,
    )
    tasks: dict[str, TaskID] = {}
    output.console.print(
        f"Session {session_id} ({text(session.get('name'))}): {text(session.get('status'))}, "
        f"{human_seconds(total)}"
    )
    listener.start()
    with progress:
        while True:
            for item in _enclosures_of(session):
                eid = _eid(item)
                done, status = _bar_state(item, total, fetched)
                message = text(item.get("message"))
                if eid not in tasks:
                    tasks[eid] = progress.add_task(
                        "", total=total, eid=eid, status=status, message=message
                    )
                progress.update(tasks[eid], completed=done, eid=eid, status=status, message=message)
            if _finished(session):
                break
            try:
                wake.get(timeout=min(REFRESH_S, 1.0))
                while not wake.empty():
                    wake.get_nowait()
            except queue.Empty:
                if time.monotonic() - fetched < REFRESH_S:
                    continue
            session = client.get(f"/api/sessions/{session_id}")
            fetched = time.monotonic()
    stop.set()
    status = text(session.get("status"))
    output.console.print(f"Session {session_id} {status}.")
    ctx.exit(0 if status == SessionStatus.COMPLETED.value else 1)
