"""The broker-side commands: ``mqtt sub|pub`` and ``provision``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from controlsvc.ctl import output
from controlsvc.ctl.context import CtlContext, json_option, pass_ctl
from schemas.topics import DEFAULT_PREFIX

if TYPE_CHECKING:
    from controlsvc.ctl.mqtt import Message

__all__ = ["mqtt", "provision_command"]

BINARY_PREVIEW = 64  # bytes of a binary payload shown as hex
DEFAULT_STATE_DIR = "/var/lib/jaxmba-agent"  # systemd's StateDirectory= of the agent unit
# paho and the agent's config code load only for the commands that use them (start-up time).


def _broker_option(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option(
        "--ca-file",
        type=click.Path(exists=True, dir_okay=False),
        help="CA certificate for mqtts:// (default: the system's trust store).",
    )(func)
    func = click.option(
        "--prefix",
        envvar="JAXMBA_MQTT_PREFIX",
        default=DEFAULT_PREFIX,
        show_default=True,
        help="Topic prefix; topics not starting with it (or '$') are taken relative to it.",
    )(func)
    return click.option(
        "--broker",
        envvar="JAXMBA_MQTT_URL",
        required=True,
        metavar="mqtt[s]://USER:PASS@HOST:PORT",
        help="The broker and an operator or service account (or $JAXMBA_MQTT_URL).",
    )(func)


@click.group()
def mqtt() -> None:
    """Ad-hoc MQTT straight to the broker (operator or service account)."""


def _payload_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        head = payload[:BINARY_PREVIEW].hex()
        return (
            f"<{len(payload)} bytes binary: {head}{'…' if len(payload) > BINARY_PREVIEW else ''}>"
        )


def _print_message(as_json: bool, message: Message) -> None:
    if as_json:
        body = _payload_text(message.payload)
        try:
            payload: object = json.loads(body)
        except ValueError:
            payload = body
        record = {
            "topic": message.topic,
            "payload": payload,
            "qos": message.qos,
            "retain": message.retain,
        }
        output.print_json(record)
        return
    flag = " (retained)" if message.retain else ""
    sys.stdout.write(f"{message.topic}{flag} {_payload_text(message.payload)}\n")
    sys.stdout.flush()


@mqtt.command("sub")
@click.argument("topics", nargs=-1)
@_broker_option
@click.option("--qos", type=click.IntRange(0, 2), default=1, show_default=True)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many messages.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0), help="Stop after S s.")
@json_option
@pass_ctl
def mqtt_sub(
    ctl: CtlContext,
    topics: tuple[str, ...],
    broker: str,
    prefix: str,
    ca_file: str | None,
    qos: int,
    count: int | None,
    duration_s: float | None,
) -> None:
    """Print messages of TOPIC filters (default: everything under the prefix)."""
    from controlsvc.ctl.mqtt import parse_broker_url, resolve_topic, subscribe

    filters = [resolve_topic(t, prefix) for t in topics] or [f"{prefix}/#"]
    subscribe(
        parse_broker_url(broker),
        filters,
        lambda message: _print_message(ctl.as_json, message),
        qos=qos,
        count=count,
        duration_s=duration_s,
        ca_file=ca_file,
        timeout=ctl.timeout,
    )


@mqtt.command("pub")
@click.argument("topic")
@click.argument("payload")
@_broker_option
@click.option("--qos", type=click.IntRange(0, 2), default=1, show_default=True)
@click.option("--retain", is_flag=True, help="Ask the broker to keep it for new subscribers.")
@pass_ctl
def mqtt_pub(
    ctl: CtlContext,
    topic: str,
    payload: str,
    broker: str,
    prefix: str,
    ca_file: str | None,
    qos: int,
    retain: bool,
) -> None:
    """Publish PAYLOAD ('-' reads stdin) to TOPIC; wildcards are refused."""
    if "+" in topic or "#" in topic:
        raise click.BadParameter(
            f"{topic!r} contains a wildcard ('+' or '#'); publish to one topic", param_hint="TOPIC"
        )
    from controlsvc.ctl.mqtt import parse_broker_url, publish, resolve_topic

    data = sys.stdin.buffer.read() if payload == "-" else payload.encode("utf-8")
    full = resolve_topic(topic, prefix)
    publish(
        parse_broker_url(broker),
        full,
        data,
        qos=qos,
        retain=retain,
        ca_file=ca_file,
        timeout=ctl.timeout,
    )
    output.err_console.print(f"published {len(data)} bytes to {full} (qos {qos})", markup=False)


@click.command("provision")
@click.argument("enclosure")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The Mosquitto password file (created if missing).",
)
@click.option(
    "--broker-url",
    required=True,
    metavar="mqtt[s]://HOST:PORT",
    help="The broker as the enclosure reaches it.",
)
@click.option("--recordings", required=True, metavar="DIR", help="Recording root on the enclosure.")
@click.option("--camera", default="testpattern", show_default=True, help="Camera source.")
@click.option(
    "--state-dir", default=DEFAULT_STATE_DIR, show_default=True, help="Agent state directory."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the agent config (default: ./ENCLOSURE.toml).",
)
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option(
    "--reload-pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Send SIGHUP to the broker of this pid file so it rereads the password file.",
)
@json_option
@pass_ctl
def provision_command(
    ctl: CtlContext,
    enclosure: str,
    password_file: Path,
    broker_url: str,
    recordings: str,
    camera: str,
    state_dir: str,
    out: Path | None,
    force: bool,
    reload_pid_file: Path | None,
) -> None:
    """Create ENCLOSURE's broker account and write a ready agent config file (mode 0600)."""
    from controlsvc.ctl.provision import provision

    done = provision(
        enclosure,
        password_file=password_file,
        broker_url=broker_url,
        recordings=recordings,
        camera=camera,
        out=out,
        state_dir=state_dir,
        reload_pid_file=reload_pid_file,
        force=force,
    )
    if ctl.as_json:
        output.print_json(
            {
                "enclosure_id": done.enclosure_id,
                "config_file": str(done.config_file.absolute()),
                "password_file": str(done.password_file.absolute()),
                "new_account": done.new_account,
                "reloaded_pid": done.reloaded_pid,
            }
        )
        return
    account = "created" if done.new_account else "updated (new password)"
    reload_line = (
        f"The broker (pid {done.reloaded_pid}) was told to reload."
        if done.reloaded_pid
        else "Reload the broker now: systemctl reload mosquitto (or kill -HUP its pid)."
    )
    output.console.print(
        f"""Broker account {done.enclosure_id!r} {account} in {done.password_file}.
{reload_line}
Agent config written to {done.config_file} (mode 0600; it holds the broker password).

On the enclosure:
  install -o jaxmba-agent -g jaxmba-agent -m 0600 {done.config_file.name} \\
    /etc/jaxmba-agent/agent.toml
  jaxmba-agent check --config /etc/jaxmba-agent/agent.toml
  systemctl enable --now jaxmba-agent
Then: jaxmba-ctl enclosures show {done.enclosure_id}""",
        markup=False,
    )
