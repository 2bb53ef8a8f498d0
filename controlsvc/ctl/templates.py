"""``jaxmba-ctl templates``: saved sessions to start again (``/api/session-templates``), and
``jaxmba-ctl sessions clone``: a new session like an earlier one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from controlsvc.ctl import output
from controlsvc.ctl.context import CtlContext, json_option, pass_ctl
from controlsvc.ctl.output import human_seconds, local_time, text
from controlsvc.ctl.sessions import DurationType, TargetType, sessions

__all__ = ["sessions_clone", "templates"]

START_AT = click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])


def _start_body(name: str | None, start_at: datetime | None, allow_offline: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"allow_offline": allow_offline}
    if name:
        body["name"] = name
    if start_at is not None:
        body["start_at"] = (start_at if start_at.tzinfo else start_at.astimezone()).isoformat()
    return body


def _started(ctl: CtlContext, created: dict[str, Any]) -> None:
    if ctl.as_json:
        output.print_json(created)
        return
    output.console.print(
        f"Session {created.get('id')} ({text(created.get('name'))}) "
        f"{text(created.get('status'))} on {len(created.get('enclosures') or [])} enclosure(s); "
        f"follow it with: jaxmba-ctl sessions watch {created.get('id')}"
    )


_start_options = [
    click.option("--name", help="Name of the new session (default: the same name)."),
    click.option("--start-at", type=START_AT, help="Start later (ISO 8601; local time)."),
    click.option("--allow-offline", is_flag=True, help="Accept lost or offline enclosures."),
]


def start_options(fn: Any) -> Any:
    for option in reversed(_start_options):
        fn = option(fn)
    return fn


@click.group()
def templates() -> None:
    """Session templates: the same enclosures, prefixes, duration and settings, saved."""


@templates.command("list")
@json_option
@pass_ctl
def templates_list(ctl: CtlContext) -> None:
    """Saved templates, by name."""
    items = ctl.client().get_all("/api/session-templates")
    if ctl.as_json:
        output.print_json(items)
        return
    if not items:
        output.err_console.print("No session templates.")
        return
    output.print_table(
        ["ID", "NAME", "ENCLOSURES", "DURATION", "SAVED BY", "SAVED"],
        [
            [
                text(t.get("id")),
                text(t.get("name")),
                ", ".join(f"{e['id']}:{e['file_prefix']}" for e in t.get("enclosures") or []),
                human_seconds(float(t.get("duration_s") or 0)),
                text(t.get("created_by")),
                local_time(t.get("created_at")),
            ]
            for t in items
        ],
    )


@templates.command("create")
@click.option("--name", required=True, help="Name of the template (unique).")
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
@click.option("--notes", help="Notes copied to its sessions.")
@json_option
@pass_ctl
def templates_create(
    ctl: CtlContext,
    name: str,
    targets: tuple[dict[str, str], ...],
    duration: float,
    fps: int | None,
    hourly: bool,
    segment_minutes: int | None,
    apply_filter: bool,
    notes: str | None,
) -> None:
    """Save a template (the service checks it as it checks a session)."""
    if not duration.is_integer():
        raise click.BadParameter(f"{duration:g} s: give whole seconds", param_hint="--duration")
    body: dict[str, Any] = {
        "name": name,
        "enclosures": list(targets),
        "duration_s": int(duration),
        "fragment_hourly": hourly,
        "apply_filter": apply_filter,
        "target_fps": fps,
        "segment_minutes": segment_minutes,
        "notes": notes,
    }
    saved = ctl.client().post("/api/session-templates", body)
    if ctl.as_json:
        output.print_json(saved)
        return
    output.console.print(
        f"Template {saved.get('id')} ({name}) saved; start it with: "
        f"jaxmba-ctl templates start {saved.get('id')}"
    )


@templates.command("start")
@click.argument("template_id", type=click.IntRange(1))
@start_options
@json_option
@pass_ctl
def templates_start(
    ctl: CtlContext,
    template_id: int,
    name: str | None,
    start_at: datetime | None,
    allow_offline: bool,
) -> None:
    """Start the session a template describes."""
    path = f"/api/session-templates/{template_id}/sessions"
    _started(ctl, ctl.client().post(path, _start_body(name, start_at, allow_offline)))


@templates.command("delete")
@click.argument("template_id", type=click.IntRange(1))
@pass_ctl
def templates_delete(ctl: CtlContext, template_id: int) -> None:
    """Delete a template (its sessions stay)."""
    ctl.client().request("DELETE", f"/api/session-templates/{template_id}")
    output.console.print(f"Template {template_id} deleted.")


@sessions.command("clone")
@click.argument("session_id")
@start_options
@json_option
@pass_ctl
def sessions_clone(
    ctl: CtlContext,
    session_id: str,
    name: str | None,
    start_at: datetime | None,
    allow_offline: bool,
) -> None:
    """Start a new session like SESSION_ID: its enclosures, prefixes, duration, settings."""
    path = f"/api/sessions/{session_id}/clone"
    _started(ctl, ctl.client().post(path, _start_body(name, start_at, allow_offline)))
