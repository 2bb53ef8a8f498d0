"""``watch``: the live event stream in human form, one line per event."""

from __future__ import annotations

import json
from typing import Any

import click

from controlsvc.ctl import output
from controlsvc.ctl.context import ENCLOSURE_ID, CtlContext, json_option, pass_ctl
from controlsvc.ctl.output import dig, local_time, text
from controlsvc.ctl.sse import SseEvent, follow

__all__ = ["summary", "watch"]

SUMMARY_MAX = 160  # characters of the fallback JSON summary on one line
KIND_STYLE = {
    "enclosure.state": "bold",
    "command.updated": "cyan",
    "alert": "bold red",
    "session.state": "magenta",
    "session.progress": "magenta",
}


def _compact(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return raw if len(raw) <= SUMMARY_MAX else raw[: SUMMARY_MAX - 1] + "…"


def summary(kind: str, data: Any) -> str:
    """What an event says, in a few words."""
    if not isinstance(data, dict):
        return _compact(data)
    if kind == "enclosure.state":
        line = f"{text(data.get('previous_state'))} -> {text(data.get('state'))}"
        return f"{line}: {data['reason']}" if data.get("reason") else line
    if kind == "enclosure.status":
        camera = dig(data, "status", "camera") or {}
        parts = [text(data.get("state")), f"fps {text(camera.get('measured_fps'))}"]
        session = dig(data, "status", "recording", "session_id")
        if session:
            recorded = dig(data, "status", "recording", "recorded_s") or 0
            parts.append(f"recording {session} ({output.human_seconds(recorded)})")
        error = dig(data, "status", "last_error")
        if error:
            parts.append(f"error: {error}")
        return ", ".join(parts)
    if kind == "command.updated":
        line = f"{text(data.get('kind'))} {text(data.get('state'))}"
        line += f" ({data['detail']})" if data.get("detail") else ""
        return f"{line} [{str(data.get('id', ''))[:8]}]"
    if kind.startswith("session.") and "previous_state" in data:
        line = f"{text(data.get('previous_state'))} -> {text(data.get('state'))}"
        return f"{line}: {data['message']}" if data.get("message") else line
    if kind.startswith("session.") and "previous_status" in data:
        counts = data.get("enclosure_states")
        line = f"session {text(data.get('previous_status'))} -> {text(data.get('status'))}"
        if isinstance(counts, dict) and counts:
            line += " (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
        return line
    if kind.startswith("session."):
        parts = [str(v) for k in ("status", "state") if (v := data.get(k))]
        for key in ("recorded_s", "frames", "message", "reason"):
            if data.get(key) not in (None, ""):
                parts.append(f"{key}={data[key]}")
        return ", ".join(parts) if parts else _compact(data)
    if kind == "alert":
        severity = text(data.get("severity"))
        return f"{severity}: {text(data.get('message') or data.get('title') or _compact(data))}"
    return _compact(data)


def print_event(event: SseEvent) -> None:
    record = event.record()
    kind = str(record.get("kind") or event.event)
    style = KIND_STYLE.get(kind, "")
    when = local_time(record.get("at"), "%H:%M:%S")
    enclosure = text(record.get("enclosure_id") or record.get("session_id"))
    line = f"{when}  {kind:<17} {enclosure:<16} {summary(kind, record.get('data'))}"
    output.console.print(line, style=style, markup=False, highlight=False)


@click.command()
@click.option(
    "--kinds",
    "kinds",
    multiple=True,
    metavar="KIND[,KIND]",
    help="Only these event kinds (enclosure.state, enclosure.status, command.updated, "
    "session.progress, session.state, alert); repeat or comma-separate.",
)
@click.option("--enclosure", type=ENCLOSURE_ID, help="Only events of this enclosure.")
@click.option(
    "--last-event-id",
    metavar="ID",
    help="Replay the logged events after this id first (kept 7 days).",
)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Stop after this many events."
)
@json_option
@pass_ctl
def watch(
    ctl: CtlContext,
    kinds: tuple[str, ...],
    enclosure: str | None,
    last_event_id: str | None,
    count: int | None,
) -> None:
    """The live event stream: time, kind, enclosure, summary; Ctrl-C to stop.

    A dropped connection is resumed where it left off (Last-Event-ID). With --json, one JSON
    record per line.
    """
    wanted = [k.strip() for item in kinds for k in item.split(",") if k.strip()]
    stream = follow(
        ctl.client(),
        kinds=wanted,
        enclosure_id=enclosure,
        last_event_id=last_event_id,
        on_notice=lambda msg: output.err_console.print(f"jaxmba-ctl: {msg}", markup=False),
    )
    if not ctl.as_json:
        output.err_console.print(f"Watching events at {ctl.url} (Ctrl-C to stop)", style="dim")
    for seen, event in enumerate(stream, start=1):
        if ctl.as_json:
            output.print_json(event.record())
        else:
            print_event(event)
        if count is not None and seen >= count:
            break
