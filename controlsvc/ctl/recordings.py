"""``recordings list|export|timeline``: the segment files every session recorded, across
sessions, for people (a table) and for the analysis pipeline (CSV or JSON)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import click
import httpx

from controlsvc.ctl import output
from controlsvc.ctl.api_client import unreachable
from controlsvc.ctl.context import ENCLOSURE_ID, CtlContext, json_option, pass_ctl
from controlsvc.ctl.errors import CtlError
from controlsvc.ctl.output import human_bytes, human_seconds, local_time, parse_time, text

__all__ = ["recordings"]

TIME_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]


@click.group()
def recordings() -> None:
    """Recorded segment files across sessions: list, export (CSV/JSON), timeline."""


def _iso(value: datetime | None) -> str | None:
    """Local time unless an offset is given, as the API wants it (with an offset)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.astimezone()).isoformat()


def _filters(f: Any) -> Any:
    f = click.option("--enclosure", type=ENCLOSURE_ID, help="Only this enclosure.")(f)
    f = click.option("--session", "session_id", help="Only this session.")(f)
    f = click.option(
        "--from",
        "start",
        type=click.DateTime(TIME_FORMATS),
        help="Only segments ending after this (ISO 8601; local time unless an offset is given).",
    )(f)
    return click.option(
        "--to", "end", type=click.DateTime(TIME_FORMATS), help="Only segments starting before this."
    )(f)


def _params(
    enclosure: str | None, session_id: str | None, start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    return {
        "enclosure_id": enclosure,
        "session_id": session_id,
        "from": _iso(start),
        "to": _iso(end),
    }


def _duration(item: dict[str, Any]) -> str:
    start, end = parse_time(item.get("started_at")), parse_time(item.get("ended_at"))
    return human_seconds((end - start).total_seconds()) if start and end else "-"


@recordings.command("list")
@_filters
@json_option
@pass_ctl
def recordings_list(
    ctl: CtlContext,
    enclosure: str | None,
    session_id: str | None,
    start: datetime | None,
    end: datetime | None,
) -> None:
    """List segment files by start time: enclosure, session, start, length, frames, size, path."""
    items = ctl.client().get_all("/api/recordings", **_params(enclosure, session_id, start, end))
    if ctl.as_json:
        output.print_json(items)
        return
    if not items:
        output.err_console.print("No recordings.")
        return
    output.print_table(
        ["ENCLOSURE", "SESSION", "START", "LENGTH", "FRAMES", "SIZE", "SHA256", "PATH"],
        [
            [
                text(r.get("enclosure_id")),
                text(r.get("session_id")),
                local_time(r.get("started_at")),
                _duration(r),
                text(r.get("frames")),
                human_bytes(r.get("bytes")),
                text(r.get("sha256"))[:12],
                text(r.get("path")),
            ]
            for r in items
        ],
    )
    frames = sum(int(r.get("frames") or 0) for r in items)
    size = sum(int(r.get("bytes") or 0) for r in items)
    output.err_console.print(f"{len(items)} segments, {frames} frames, {human_bytes(size)}")


def _download(ctl: CtlContext, params: dict[str, Any], out: TextIO) -> None:
    clean = {k: v for k, v in params.items() if v is not None}
    client = ctl.client()
    with client.stream(
        "/api/recordings/export", params=clean, headers={}, timeout=max(ctl.timeout, 60.0)
    ) as response:
        try:
            for chunk in response.iter_text():
                out.write(chunk)
        except httpx.HTTPError as exc:
            raise unreachable(client.url, exc) from exc
    out.flush()


@recordings.command("export")
@_filters
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="CSV with a header row, or a JSON array.",
)
@click.option(
    "-o",
    "--output",
    "path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file (default: stdout).",
)
@pass_ctl
def recordings_export(
    ctl: CtlContext,
    enclosure: str | None,
    session_id: str | None,
    start: datetime | None,
    end: datetime | None,
    fmt: str,
    path: Path | None,
) -> None:
    """Every matching segment as CSV or JSON for the analysis pipeline."""
    params = {**_params(enclosure, session_id, start, end), "format": fmt}
    if path is None:
        _download(ctl, params, sys.stdout)
        return
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            _download(ctl, params, out)
        partial.replace(path)  # a failed export never leaves a file that looks complete
    except OSError as exc:
        raise CtlError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    output.err_console.print(f"Wrote {path}")


@recordings.command("timeline")
@click.argument("eid", type=ENCLOSURE_ID)
@click.option("--from", "start", type=click.DateTime(TIME_FORMATS), help="Default: 7 days ago.")
@click.option("--to", "end", type=click.DateTime(TIME_FORMATS), help="Default: now.")
@json_option
@pass_ctl
def recordings_timeline(
    ctl: CtlContext, eid: str, start: datetime | None, end: datetime | None
) -> None:
    """What an enclosure recorded when, across sessions, and its gaps with their cause."""
    body = ctl.client().get(
        f"/api/enclosures/{eid}/timeline", **{"from": _iso(start), "to": _iso(end)}
    )
    if ctl.as_json:
        output.print_json(body)
        return
    spans = body.get("spans") or []
    output.console.print(
        f"{eid}, {local_time(body.get('window_start'))} to {local_time(body.get('window_end'))}: "
        f"{human_seconds(float(body.get('recorded_s') or 0))} recorded, "
        f"{human_seconds(float(body.get('gap_s') or 0))} in gaps"
    )
    if not spans:
        output.err_console.print("Nothing recorded in this window.")
        return
    output.print_table(
        ["FROM", "TO", "LENGTH", "WHAT", "SESSION", "SEGMENTS", "FRAMES"],
        [
            [
                local_time(s.get("started_at")),
                local_time(s.get("ended_at")),
                human_seconds(float(s.get("duration_s") or 0)),
                f"gap: {text(s.get('cause'))}" if s.get("kind") == "gap" else text(s.get("kind")),
                f"{text(s.get('session_id'))} ({text(s.get('session_name'))})",
                text(s.get("segments")) if s.get("kind") == "recorded" else "",
                text(s.get("frames")) if s.get("kind") == "recorded" else "",
            ]
            for s in spans
        ],
    )
