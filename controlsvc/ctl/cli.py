"""``jaxmba-ctl``: the click commands and ``main``.

Every failure ends as ONE line on stderr (``jaxmba-ctl: error: ...``) and a non-zero exit code:
1 for failures (service, broker, command outcome), 2 for bad usage, 130 for Ctrl-C. Set
``JAXMBA_CTL_DEBUG=1`` to get the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from click.shell_completion import get_completion_class

from controlsvc.ctl import output
from controlsvc.ctl.alerts import alerts
from controlsvc.ctl.broker import mqtt, provision_command
from controlsvc.ctl.context import ENCLOSURE_ID, CtlContext, json_option, parse_params, pass_ctl
from controlsvc.ctl.errors import CtlError
from controlsvc.ctl.events import watch
from controlsvc.ctl.output import ago, dig, human_bytes, human_seconds, local_time, text
from controlsvc.ctl.progress import lost_text, progress_text, state_text
from controlsvc.ctl.recordings import recordings
from controlsvc.ctl.sessions import sessions
from controlsvc.ctl.templates import templates
from schemas.enums import CommandKind, CommandState, EnclosureState
from schemas.rest.enclosures import DEFAULT_COMMAND_TIMEOUT_S, MAX_COMMAND_WAIT_S

__all__ = ["cli", "main"]

PROG = "jaxmba-ctl"
COMPLETE_VAR = "_JAXMBA_CTL_COMPLETE"
DEBUG_ENV = "JAXMBA_CTL_DEBUG"
# A command settles at its deadline on the service; wait a little longer for that answer.
WAIT_MARGIN_S = 5.0
MAX_WAIT_PER_REQUEST_S = MAX_COMMAND_WAIT_S
STATE_STYLE = {
    "idle": "green",
    "recording": "bold cyan",
    "lost": "bold red",
    "error": "red",
    "offline": "dim",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="JAXMBA_URL",
    metavar="URL",
    help="The jaxmba service (default: $JAXMBA_URL, else the last login's, else "
    "http://127.0.0.1:5000).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (every read).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    envvar="JAXMBA_TIMEOUT",
    help="Seconds to wait for the service or broker to answer.",
)
@click.version_option(package_name="jaxmba", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, url: str | None, as_json: bool, timeout: float) -> None:
    """Control a jaxmba fleet: enclosures, commands, recording sessions, live events, MQTT."""
    state = CtlContext(url_option=url, as_json=as_json, timeout=timeout)
    ctx.obj = state
    ctx.call_on_close(state.close)


# -- login ---------------------------------------------------------------------------------------
@cli.command()
@click.option("--email", help="The account's email (prompted when left out).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (first line).")
@pass_ctl
def login(ctl: CtlContext, email: str | None, password_stdin: bool) -> None:
    """Log in and store the tokens (mode 0600) for this URL."""
    if email is None:
        email = click.prompt("Email")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True)
    if not password:
        raise CtlError("no password given", exit_code=2)
    body = ctl.client().login(str(email), password)
    role = dig(body, "user", "role") or "?"
    if ctl.as_json:
        output.print_json({"url": ctl.url, "user": body.get("user")})
    else:
        output.console.print(f"Logged in to {ctl.url} as {email} ({role}).")
        output.err_console.print(f"Tokens stored in {ctl.store.path}", style="dim")


@cli.command()
@pass_ctl
def logout(ctl: CtlContext) -> None:
    """Revoke the stored tokens at the service and forget them."""
    if ctl.client().logout():
        output.console.print(f"Logged out of {ctl.url}.")
    else:
        output.console.print(f"Not logged in to {ctl.url}.")


@cli.command()
@json_option
@pass_ctl
def whoami(ctl: CtlContext) -> None:
    """The logged-in user."""
    me = ctl.client().get("/api/users/me")
    if ctl.as_json:
        output.print_json(me)
    else:
        output.console.print(f"{me.get('email')} ({me.get('role')}) at {ctl.url}")


# -- enclosures ----------------------------------------------------------------------------------
@cli.group()
def enclosures() -> None:
    """The enclosures: list and details."""


def _state(value: Any) -> str:
    name = text(value)
    style = STATE_STYLE.get(name)
    return f"[{style}]{name}[/]" if style else name


@enclosures.command("list")
@click.option(
    "--state", type=click.Choice([s.value for s in EnclosureState]), help="Only this state."
)
@click.option("--search", help="Search in id, name and location.")
@json_option
@pass_ctl
def enclosures_list(ctl: CtlContext, state: str | None, search: str | None) -> None:
    """List enclosures: id, name, state, location, last seen, recording session, disk free."""
    items = ctl.client().get_all("/api/enclosures", state=state, q=search)
    if ctl.as_json:
        output.print_json(items)
        return
    if not items:
        output.err_console.print("No enclosures.")
        return
    output.print_table(
        ["ID", "NAME", "STATE", "LOCATION", "LAST SEEN", "RECORDING", "DISK FREE"],
        [
            [
                text(e.get("id")),
                text(e.get("name")),
                _state(e.get("state")),
                text(e.get("location")),
                ago(e.get("last_seen_at")),
                text(dig(e, "session", "session_id")),
                human_bytes(dig(e, "status", "system", "disk_free_bytes")),
            ]
            for e in items
        ],
    )


def _session_text(part: Any) -> str:
    """The session it records for, with the figures ``sessions show`` gives."""
    if not isinstance(part, dict):
        return "none"
    words = [
        f"{text(part.get('session_name'))} ({text(part.get('session_id'))})",
        state_text(part),
        progress_text(part.get("progress")),
    ]
    return ", ".join(words + ([lost_text(part)] if part.get("lost") else []))


def _status_pairs(status: dict[str, Any]) -> list[tuple[str, str]]:
    camera = status.get("camera") or {}
    system = status.get("system") or {}
    recording = status.get("recording")
    fps = f"{text(camera.get('measured_fps'))} measured / {text(camera.get('target_fps'))} target"
    pairs = [
        ("status at", f"{local_time(status.get('at'))} (seq {text(status.get('seq'))})"),
        (
            "camera",
            f"{text(camera.get('source'))}, "
            f"{'connected' if camera.get('connected') else 'NOT connected'}"
            + (f", error: {camera['error']}" if camera.get("error") else ""),
        ),
        ("fps", fps),
        ("last frame", local_time(camera.get("last_frame_at"))),
    ]
    if recording:
        pairs += [
            (
                "recording",
                f"session {text(recording.get('session_id'))}, "
                f"{human_seconds(recording.get('recorded_s') or 0)} recorded, "
                f"{text(recording.get('segments_closed'))} segments closed",
            ),
            ("file", text(recording.get("file"))),
        ]
    else:
        pairs.append(("recording", "no"))
    load = [system.get(k) for k in ("load_1", "load_5", "load_15")]
    pairs += [
        ("host", f"{text(system.get('hostname'))} ({text(system.get('os_release'))})"),
        ("uptime", human_seconds(system.get("uptime_s") or 0)),
        ("load", " ".join(f"{x:.2f}" if isinstance(x, int | float) else "-" for x in load)),
        (
            "RAM free",
            f"{human_bytes(system.get('ram_free_bytes'))} of "
            f"{human_bytes(system.get('ram_total_bytes'))}",
        ),
        (
            "disk free",
            f"{human_bytes(system.get('disk_free_bytes'))} of "
            f"{human_bytes(system.get('disk_total_bytes'))}",
        ),
        ("clock offset", text(dig(status, "clock", "offset_s"))),
        ("live view", "on" if dig(status, "live_view", "active") else "off"),
        ("last error", text(status.get("last_error"))),
    ]
    return pairs


@enclosures.command("show")
@click.argument("eid", type=ENCLOSURE_ID)
@json_option
@pass_ctl
def enclosures_show(ctl: CtlContext, eid: str) -> None:
    """Details of one enclosure with its latest status."""
    enc = ctl.client().get(f"/api/enclosures/{eid}")
    if ctl.as_json:
        output.print_json(enc)
        return
    output.print_pairs(
        [
            ("id", text(enc.get("id"))),
            ("name", text(enc.get("name"))),
            (
                "state",
                f"{_state(enc.get('state'))} since {local_time(enc.get('state_changed_at'))}",
            ),
            ("lifecycle", text(enc.get("lifecycle"))),
            ("location", text(enc.get("location"))),
            ("notes", text(enc.get("notes"))),
            (
                "last seen",
                f"{ago(enc.get('last_seen_at'))} ({local_time(enc.get('last_seen_at'))})",
            ),
            ("agent", f"{text(enc.get('agent_version'))} (boot {text(enc.get('boot_id'))})"),
            ("registered", local_time(enc.get("registered_at"))),
            ("session", _session_text(enc.get("session"))),
        ],
        title=f"Enclosure {eid}",
    )
    status = enc.get("status")
    if isinstance(status, dict):
        output.console.print()
        output.print_pairs(_status_pairs(status), title="Latest status")


# -- commands ------------------------------------------------------------------------------------
@cli.group()
def command() -> None:
    """Send commands to enclosures and follow them."""


def _settled(record: dict[str, Any]) -> bool:
    try:
        return CommandState(str(record.get("state"))).is_terminal
    except ValueError:
        return False


def _wait_command(ctl: CtlContext, record: dict[str, Any], wait_s: float) -> dict[str, Any]:
    client = ctl.client()
    deadline = time.monotonic() + wait_s
    while not _settled(record):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        wait = min(remaining, MAX_WAIT_PER_REQUEST_S)
        record = client.request(
            "GET",
            f"/api/commands/{record['id']}",
            params={"wait": round(wait, 3)},
            timeout=wait + ctl.timeout,
        )
    return record


def _report_command(ctl: CtlContext, record: dict[str, Any], waited: bool) -> int:
    state = str(record.get("state"))
    short = str(record.get("id", ""))[:8]
    line = f"{record.get('kind')} to {record.get('enclosure_id')}: {state}"
    if record.get("detail"):
        line += f" ({record['detail']})"
    if record.get("enclosure_state") in ("lost", "offline") and not _settled(record):
        line += f" [enclosure is {record['enclosure_state']}]"
    if not waited:
        if ctl.as_json:
            output.print_json(record)
        else:
            output.console.print(f"command {record.get('id')} {line}")
        return 0
    ok = state == CommandState.SUCCEEDED.value
    if ctl.as_json:
        output.print_json(record)
    elif ok:
        output.console.print(f"command {short} {line}")
    if not ok:
        if not _settled(record):
            line += " - not settled yet"
        output.err_console.print(f"{PROG}: command {short} {line}", markup=False)
    return 0 if ok else 1


@command.command("send")
@click.argument("enclosure", type=ENCLOSURE_ID)
@click.argument("kind", type=click.Choice([k.value for k in CommandKind]))
@click.option(
    "--param",
    "params",
    multiple=True,
    callback=parse_params,
    metavar="KEY=VALUE",
    help="A parameter; the value is read as JSON when it parses (10, true), else a string.",
)
@click.option(
    "--timeout-s",
    type=click.IntRange(1, 3600),
    default=None,
    help="Seconds the enclosure has to answer (the command expires after; default 30).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for the outcome; the exit code says it (0 succeeded, 1 otherwise).",
)
@json_option
@pass_ctl
@click.pass_context
def command_send(
    ctx: click.Context,
    ctl: CtlContext,
    enclosure: str,
    kind: str,
    params: dict[str, Any],
    timeout_s: int | None,
    wait: bool,
) -> None:
    """Send KIND (ping, start_recording, ...) to ENCLOSURE."""
    body: dict[str, Any] = {"kind": kind, "params": params}
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    path = f"/api/enclosures/{enclosure}/commands"
    if not wait:
        record = ctl.client().post(path, body)
    else:
        # One request sends and waits for the outcome (most commands settle in milliseconds);
        # a longer one is followed with GET ?wait= until its deadline has passed.
        first_wait = min(float(timeout_s or DEFAULT_COMMAND_TIMEOUT_S), MAX_WAIT_PER_REQUEST_S)
        record = ctl.client().request(
            "POST", path, json=body, params={"wait": first_wait}, timeout=first_wait + ctl.timeout
        )
        deadline_s = max(0.0, _seconds_until(record.get("deadline_at")))
        record = _wait_command(ctl, record, deadline_s + WAIT_MARGIN_S)
    ctx.exit(_report_command(ctl, record, wait))


def _seconds_until(value: Any) -> float:
    parsed = output.parse_time(value)
    if parsed is None:
        return 30.0
    return (parsed - datetime.now(UTC)).total_seconds()


@command.command("show")
@click.argument("command_id")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(0, 3600),
    default=0.0,
    help="Wait up to this many seconds for the command to settle.",
)
@json_option
@pass_ctl
def command_show(ctl: CtlContext, command_id: str, wait_s: float) -> None:
    """One command and its outcome."""
    record = ctl.client().get(f"/api/commands/{command_id}")
    if wait_s:
        record = _wait_command(ctl, record, wait_s)
    if ctl.as_json:
        output.print_json(record)
        return
    output.print_pairs(
        [
            (k, text(record.get(k)))
            for k in (
                "id",
                "enclosure_id",
                "kind",
                "params",
                "state",
                "detail",
                "result",
                "created_at",
                "sent_at",
                "settled_at",
                "deadline_at",
                "enclosure_state",
            )
        ],
        title="Command",
    )


# -- the rest ------------------------------------------------------------------------------------
cli.add_command(sessions)
cli.add_command(templates)
cli.add_command(alerts)
cli.add_command(recordings)
cli.add_command(watch)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), default="bash")
def completion(shell: str) -> None:
    """Print the shell completion script, e.g. eval "$(jaxmba-ctl completion bash)"."""
    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, PROG, COMPLETE_VAR).source(), nl=False)


cli.add_command(mqtt)
cli.add_command(provision_command)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every error is one line on stderr, never a traceback."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        result = cli.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(f"{PROG}: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"{PROG}: error: {_one_line(exc.format_message())}{where}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"{PROG}: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except CtlError as exc:
        click.echo(f"{PROG}: error: {_one_line(exc.message)}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (| head): no message, and no second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        click.echo(
            f"{PROG}: unexpected error: {type(exc).__name__}: {_one_line(str(exc))} "
            f"(set {DEBUG_ENV}=1 for details)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0
