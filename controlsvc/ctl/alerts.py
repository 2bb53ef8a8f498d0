"""``alerts list|ack``: the alerts every user shares, and acknowledging them (for everybody)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from controlsvc.ctl import output
from controlsvc.ctl.context import ENCLOSURE_ID, CtlContext, json_option, pass_ctl
from controlsvc.ctl.output import local_time, text
from controlsvc.ctl.sessions import DurationType
from schemas.rest.alerts import ALERT_ID_PATTERN, AlertStateFilter

__all__ = ["alerts"]

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


@click.group()
def alerts() -> None:
    """Alerts: list what needs attention, acknowledge it for everybody."""


def _severity(value: Any) -> str:
    name = text(value)
    style = SEVERITY_STYLE.get(name)
    return f"[{style}]{name}[/]" if style else name


def _acked(alert: dict[str, Any]) -> str:
    if not alert.get("acked_at"):
        return "no"
    return f"{text(alert.get('acked_by'))} {local_time(alert.get('acked_at'), '%m-%d %H:%M')}"


@alerts.command("list")
@click.option(
    "--state",
    type=click.Choice([s.value for s in AlertStateFilter]),
    help="open (the condition holds) or recovered.",
)
@click.option("--unacked", is_flag=True, help="Only alerts nobody has acknowledged.")
@click.option(
    "--since",
    type=DurationType(),
    default="24h",
    show_default=True,
    help="Alerts active within this long (still open, or recovered since).",
)
@click.option("--all", "everything", is_flag=True, help="Every alert, however old.")
@click.option("--enclosure", type=ENCLOSURE_ID, help="Only this enclosure.")
@click.option("--session", "session_id", help="Only this session.")
@json_option
@pass_ctl
def alerts_list(
    ctl: CtlContext,
    state: str | None,
    unacked: bool,
    since: float,
    everything: bool,
    enclosure: str | None,
    session_id: str | None,
) -> None:
    """List alerts, newest first: open ones and those of the last 24 h by default."""
    params: dict[str, Any] = {
        "state": state,
        "acknowledged": "false" if unacked else None,
        "enclosure_id": enclosure,
        "session_id": session_id,
    }
    if not everything:
        params["since"] = (datetime.now(UTC) - timedelta(seconds=since)).isoformat()
    items = ctl.client().get_all("/api/alerts", **params)
    if ctl.as_json:
        output.print_json(items)
        return
    if not items:
        output.err_console.print("No alerts.")
        return
    output.print_table(
        ["ID", "SEVERITY", "ENCLOSURE", "SESSION", "RAISED", "RECOVERED", "ACKED", "MESSAGE"],
        [
            [
                text(a.get("alert_id")),
                _severity(a.get("severity")),
                text(a.get("enclosure_id")),
                text(a.get("session_id")),
                local_time(a.get("raised_at")),
                local_time(a.get("recovered_at")) if a.get("recovered_at") else "open",
                _acked(a),
                text(a.get("message")),
            ]
            for a in items
        ],
    )


@alerts.command("ack")
@click.argument("alert_ids", nargs=-1, required=True, metavar="ALERT_ID...")
@json_option
@pass_ctl
def alerts_ack(ctl: CtlContext, alert_ids: tuple[str, ...]) -> None:
    """Acknowledge alerts for everybody (the web UI drops them at once)."""
    for alert_id in alert_ids:
        if not re.fullmatch(ALERT_ID_PATTERN, alert_id):
            raise click.BadParameter(f"{alert_id!r} is not an alert id", param_hint="ALERT_ID")
    client = ctl.client()
    done = [client.post(f"/api/alerts/{alert_id}/ack") for alert_id in alert_ids]
    if ctl.as_json:
        output.print_json(done)
        return
    for alert in done:
        output.console.print(
            f"Acknowledged {text(alert.get('alert_id'))} "
            f"(by {text(alert.get('acked_by'))} at {local_time(alert.get('acked_at'))})."
        )
