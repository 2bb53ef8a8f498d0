"""`jaxmba-ctl` through real subprocesses against a real demo (broker, bridge, agents, API).

One demo per module (started as tests/e2e/test_demo.py does); every test runs
`.venv/bin/jaxmba-ctl` with its own XDG_CONFIG_HOME and checks the exit code and what it prints.
Errors must be one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controlsvc.broker import OPERATOR_USER, find_free_port
from tests.integration.test_ctl_offline import CTL, ctl_env, one_error_line, run_ctl
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]

ENCLOSURES = ("demo-01", "demo-02")
SERVICE_USER = "jaxmba_service"


@dataclass(frozen=True)
class Demo:
    root: Path
    base: str
    email: str
    password: str
    mqtt_port: int  # enclosures and operators
    service_port: int  # the service account alone
    credentials: dict[str, str]

    @property
    def mosquitto_dir(self) -> Path:
        return self.root / "var" / "mosquitto"

    def broker_url(self, user: str, password: str | None = None) -> str:
        secret = password if password is not None else self.credentials[user]
        port = self.service_port if user == SERVICE_USER else self.mqtt_port
        return f"mqtt://{user}:{secret}@127.0.0.1:{port}"


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("ctl-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMBA_")}
    env["FLASK_CONFIG"] = "dev"
    config = root / "jax-mba-service.config"
    cli = [sys.executable, "-m", "controlsvc", "--config", str(config)]
    subprocess.run([*cli, "init_config"], cwd=root, env=env, check=True, capture_output=True)
    port = find_free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = root / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cli, "demo", "--enclosures", str(len(ENCLOSURES)), "--port", str(port)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: proc.poll() is None and _healthy(base),
            timeout=90,
            message=lambda: f"demo never became healthy:\n{log_path.read_text()[-3000:]}",
        )
        admin = json.loads((root / "var" / "demo" / "admin.json").read_text())
        mosquitto = root / "var" / "mosquitto"
        yield Demo(
            root=root,
            base=base,
            email=admin["email"],
            password=admin["password"],
            mqtt_port=int((mosquitto / "port").read_text().strip()),
            service_port=int((mosquitto / "service-port").read_text().strip()),
            credentials=json.loads((mosquitto / "credentials.json").read_text()),
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def env(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A logged-in user's environment (the login is the first thing tested)."""
    environment = ctl_env(tmp_path_factory.mktemp("xdg"))
    result = run_ctl(
        environment,
        "--url",
        demo.base,
        "login",
        "--email",
        demo.email,
        "--password-stdin",
        stdin=demo.password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert demo.email in result.stdout
    return environment


def _credentials_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "jaxmba" / "credentials.json"


# -- login ---------------------------------------------------------------------------------------
def test_login_with_a_wrong_password_fails_in_one_line(demo: Demo, tmp_path: Path) -> None:
    environment = ctl_env(tmp_path)
    result = run_ctl(
        environment,
        "--url",
        demo.base,
        "login",
        "--email",
        demo.email,
        "--password-stdin",
        stdin="not-the-password\n",
    )
    assert result.returncode == 1
    assert "401" in one_error_line(result)
    assert not _credentials_file(environment).exists()


def test_login_stores_tokens_readable_by_the_user_only(env: dict[str, str], demo: Demo) -> None:
    path = _credentials_file(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored["default_url"] == demo.base
    assert stored["logins"][demo.base]["email"] == demo.email
    # The stored URL is used without --url.
    result = run_ctl(env, "--json", "whoami")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["email"] == demo.email


def test_a_rejected_access_token_is_refreshed_and_stored(env: dict[str, str], demo: Demo) -> None:
    path = _credentials_file(env)
    stored = json.loads(path.read_text())
    stored["logins"][demo.base]["access_token"] = "not-a-jwt"
    path.write_text(json.dumps(stored))
    result = run_ctl(env, "whoami")
    assert result.returncode == 0, result.stderr
    renewed = json.loads(path.read_text())["logins"][demo.base]
    assert renewed["access_token"] != "not-a-jwt"
    assert renewed["refresh_token"] != stored["logins"][demo.base]["refresh_token"]  # rotated
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_logout_revokes_and_forgets(demo: Demo, tmp_path: Path) -> None:
    environment = ctl_env(tmp_path)
    login = run_ctl(
        environment,
        "--url",
        demo.base,
        "login",
        "--email",
        demo.email,
        "--password-stdin",
        stdin=demo.password + "\n",
    )
    assert login.returncode == 0, login.stderr
    refresh = json.loads(_credentials_file(environment).read_text())["logins"][demo.base][
        "refresh_token"
    ]
    assert run_ctl(environment, "logout").returncode == 0
    assert demo.base not in json.loads(_credentials_file(environment).read_text())["logins"]
    revoked = httpx.post(
        f"{demo.base}/api/auth/refresh", headers={"Authorization": f"Bearer {refresh}"}
    )
    assert revoked.status_code == 401
    after = run_ctl(environment, "--url", demo.base, "enclosures", "list")
    assert after.returncode == 1
    assert "not logged in" in one_error_line(after)


# -- enclosures ----------------------------------------------------------------------------------
def _enclosures(env: dict[str, str]) -> list[dict]:
    result = run_ctl(env, "enclosures", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_enclosures_list_as_table_and_json(env: dict[str, str]) -> None:
    wait_for(
        lambda: [e["state"] for e in _enclosures(env)] == ["idle", "idle"],
        timeout=60,
        interval=0.5,
        message=lambda: f"demo enclosures not idle: {_enclosures(env)}",
    )
    table = run_ctl(env, "enclosures", "list")
    assert table.returncode == 0, table.stderr
    for eid in ENCLOSURES:
        assert eid in table.stdout
    assert "idle" in table.stdout
    assert "DISK FREE" in table.stdout
    assert "iB" in table.stdout  # disk free in human units, from the status
    filtered = run_ctl(env, "--json", "enclosures", "list", "--search", "demo-02")
    assert [e["id"] for e in json.loads(filtered.stdout)] == ["demo-02"]
    none = run_ctl(env, "--json", "enclosures", "list", "--state", "recording")
    assert json.loads(none.stdout) == []


def test_enclosures_show_as_table_and_json(env: dict[str, str]) -> None:
    result = run_ctl(env, "enclosures", "show", "demo-01")
    assert result.returncode == 0, result.stderr
    assert "demo-01" in result.stdout
    assert "Latest status" in result.stdout
    assert "testpattern" in result.stdout
    as_json = run_ctl(env, "enclosures", "show", "demo-01", "--json")
    body = json.loads(as_json.stdout)
    assert body["id"] == "demo-01"
    assert body["status"]["camera"]["source"] == "testpattern"


def test_unknown_enclosure_is_one_clear_line(env: dict[str, str]) -> None:
    result = run_ctl(env, "enclosures", "show", "no-such-enclosure")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "no-such-enclosure" in line
    assert "404" in line
    bad_id = run_ctl(env, "enclosures", "show", "Not_An_Id")
    assert bad_id.returncode == 2
    assert "lowercase" in one_error_line(bad_id)


# -- commands ------------------------------------------------------------------------------------
def test_command_send_ping_waits_for_success(env: dict[str, str]) -> None:
    result = run_ctl(env, "command", "send", "demo-01", "ping", "--wait")
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    as_json = run_ctl(env, "--json", "command", "send", "demo-02", "ping", "--timeout-s", "10")
    assert as_json.returncode == 0, as_json.stderr
    record = json.loads(as_json.stdout)
    assert (record["enclosure_id"], record["state"]) == ("demo-02", "succeeded")


def test_a_rejected_command_exits_1_with_the_reason(env: dict[str, str]) -> None:
    result = run_ctl(env, "command", "send", "demo-01", "stop_recording")  # idle: rejected
    assert result.returncode == 1
    line = one_error_line(result)
    assert "rejected" in line


def test_command_params_are_json_values(env: dict[str, str]) -> None:
    result = run_ctl(
        env,
        "--json",
        "command",
        "send",
        "demo-02",
        "start_live_view",
        "--param",
        "duration_s=5",
        "--no-wait",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] == {"duration_s": 5}
    invalid = run_ctl(env, "command", "send", "demo-02", "start_live_view", "--param", "x=1")
    assert invalid.returncode == 1
    assert "params.x" in one_error_line(invalid)  # the service's problem names the field


def test_command_to_an_unknown_enclosure_is_one_clear_line(env: dict[str, str]) -> None:
    result = run_ctl(env, "command", "send", "ghost-01", "ping")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "ghost-01" in line


# -- events --------------------------------------------------------------------------------------
def test_watch_replays_and_follows_events(env: dict[str, str]) -> None:
    # Replay from the log (what a resumed stream gets first), in human form.
    replay = run_ctl(
        env, "watch", "--kinds", "command.updated", "--last-event-id", "0", "--count", "1"
    )
    assert replay.returncode == 0, replay.stderr
    assert "command.updated" in replay.stdout
    assert "ping" in replay.stdout or "stop_recording" in replay.stdout

    # Live: the watcher prints the command sent while it runs.
    watcher = subprocess.Popen(
        [
            CTL,
            "--json",
            "watch",
            "--kinds",
            "command.updated",
            "--enclosure",
            "demo-02",
            "--count",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _sent_and_exited(env, watcher), timeout=30, message="watch saw nothing")
        out, err = watcher.communicate(timeout=5)
        assert watcher.returncode == 0, err
        record = json.loads(out)
        assert (record["kind"], record["enclosure_id"]) == ("command.updated", "demo-02")
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(5)


def _sent_and_exited(env: dict[str, str], proc: subprocess.Popen[str]) -> bool:
    """Send a ping (the watcher may not be subscribed yet) and give it a second to exit."""
    assert run_ctl(env, "command", "send", "demo-02", "ping", "--no-wait").returncode == 0
    try:
        proc.wait(1)
    except subprocess.TimeoutExpired:
        return False
    return True


# -- MQTT ----------------------------------------------------------------------------------------
def test_mqtt_sub_reads_retained_state_as_operator(env: dict[str, str], demo: Demo) -> None:
    result = run_ctl(
        env,
        "mqtt",
        "sub",
        "enc/demo-01/state",
        "--count",
        "1",
        "--json",
        "--broker",
        demo.broker_url(OPERATOR_USER),
    )
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout)
    assert message["topic"] == "jaxmba/v1/enc/demo-01/state"
    assert message["retain"] is True
    assert message["payload"]["state"] == "ready"


def test_mqtt_operator_may_not_publish(env: dict[str, str], demo: Demo) -> None:
    result = run_ctl(
        env, "mqtt", "pub", "service/alerts", "{}", "--broker", demo.broker_url(OPERATOR_USER)
    )
    assert result.returncode == 1
    assert "not authorized" in one_error_line(result).lower()


def test_mqtt_pub_as_service_reaches_a_subscriber(env: dict[str, str], demo: Demo) -> None:
    sub_env = {**env, "JAXMBA_MQTT_URL": demo.broker_url(OPERATOR_USER)}
    subscriber = subprocess.Popen(
        [CTL, "mqtt", "sub", "service/alerts", "--count", "1"],
        env=sub_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def delivered() -> bool:
            published = run_ctl(
                env,
                "mqtt",
                "pub",
                "service/alerts",
                '{"test": "ctl"}',
                "--broker",
                demo.broker_url(SERVICE_USER),
            )
            assert published.returncode == 0, published.stderr
            try:
                subscriber.wait(1)
            except subprocess.TimeoutExpired:
                return False
            return True

        wait_for(delivered, timeout=30)
        out, err = subscriber.communicate(timeout=5)
        assert subscriber.returncode == 0, err
        assert out.strip() == 'jaxmba/v1/service/alerts {"test": "ctl"}'
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait(5)


def test_mqtt_wrong_password_is_refused_in_one_line(env: dict[str, str], demo: Demo) -> None:
    wrong = run_ctl(
        env, "mqtt", "sub", "--count", "1", "--broker", demo.broker_url(OPERATOR_USER, "wrong")
    )
    assert wrong.returncode == 1
    assert "refused" in one_error_line(wrong)


# -- provision -----------------------------------------------------------------------------------
def test_provision_writes_a_private_config_the_broker_accepts(
    env: dict[str, str], demo: Demo, tmp_path: Path
) -> None:
    out = tmp_path / "enc-new.toml"
    result = run_ctl(
        env,
        "provision",
        "enc-new",
        "--password-file",
        str(demo.mosquitto_dir / "passwd"),
        "--broker-url",
        f"mqtt://127.0.0.1:{demo.mqtt_port}",
        "--recordings",
        str(tmp_path / "rec"),
        "--out",
        str(out),
        "--reload-pid-file",
        str(demo.mosquitto_dir / "mosquitto.pid"),
    )
    assert result.returncode == 0, result.stderr
    assert "enc-new" in result.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = tomllib.loads(out.read_text())
    assert config["agent"]["enclosure_id"] == "enc-new"
    agent_url = config["broker"]["url"]
    assert agent_url.startswith("mqtt://enc-new:")

    # The broker rereads the password file on SIGHUP: the new account may publish its state.
    def accepted() -> bool:
        published = run_ctl(
            env, "mqtt", "pub", "enc/enc-new/state", '{"v":1}', "--broker", agent_url
        )
        return published.returncode == 0

    wait_for(accepted, timeout=10, interval=0.2, message="the broker never accepted enc-new")
    # ... and only its own topics.
    foreign = run_ctl(env, "mqtt", "pub", "enc/demo-01/state", "{}", "--broker", agent_url)
    assert foreign.returncode == 1


# -- sessions ------------------------------------------------------------------------------------
def _sessions_api(demo: Demo, env: dict[str, str]) -> bool:
    token = json.loads(_credentials_file(env).read_text())["logins"][demo.base]["access_token"]
    response = httpx.get(
        f"{demo.base}/api/sessions", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return response.status_code != 404


def test_sessions_create_list_show_cancel(env: dict[str, str], demo: Demo) -> None:
    if not _sessions_api(demo, env):
        pytest.skip("the sessions API (issue 6) is not in this build yet")
    created = run_ctl(
        env,
        "--json",
        "sessions",
        "create",
        "--name",
        "ctl test",
        "--enclosure",
        "demo-01:mouse1",
        "--enclosure",
        "demo-02:mouse2",
        "--duration",
        "10m",
        "--fps",
        "10",
    )
    assert created.returncode == 0, created.stderr
    session_id = str(json.loads(created.stdout)["id"])
    listed = run_ctl(env, "--json", "sessions", "list")
    assert session_id in [str(s["id"]) for s in json.loads(listed.stdout)]
    shown = run_ctl(env, "sessions", "show", session_id)
    assert shown.returncode == 0, shown.stderr
    assert "demo-01" in shown.stdout
    assert "demo-02" in shown.stdout
    one = run_ctl(env, "sessions", "cancel", session_id, "--enclosure", "demo-02")
    assert one.returncode == 0, one.stderr
    whole = run_ctl(env, "sessions", "cancel", session_id)
    assert whole.returncode == 0, whole.stderr
    watched = run_ctl(env, "sessions", "watch", session_id, timeout=60)
    assert watched.returncode == 1  # canceled
    assert "canceled" in watched.stdout
    twice = run_ctl(env, "sessions", "cancel", session_id)
    assert twice.returncode == 0, twice.stderr  # idempotent
    unknown = run_ctl(env, "sessions", "show", "no-such-session")
    assert unknown.returncode == 1
    assert "404" in one_error_line(unknown)
    busy = run_ctl(
        env, "sessions", "create", "--name", "x", "--enclosure", "ghost-01:a", "--duration", "10"
    )
    assert busy.returncode == 1
    assert "ghost-01" in one_error_line(busy)


def test_templates_start_and_clone(env: dict[str, str]) -> None:
    """A template saved, listed, started; the session shows each enclosure's figures with
    where they come from; a clone starts it again; the template is deleted."""
    saved = run_ctl(
        env,
        "--json",
        "templates",
        "create",
        "--name",
        "ctl template",
        "--enclosure",
        "demo-01:tpl1",
        "--duration",
        "5m",
        "--segment-minutes",
        "1",
    )
    assert saved.returncode == 0, saved.stderr
    template_id = str(json.loads(saved.stdout)["id"])
    listed = run_ctl(env, "templates", "list")
    assert "ctl template" in listed.stdout
    assert "demo-01:tpl1" in listed.stdout
    started = run_ctl(env, "--json", "templates", "start", template_id, "--name", "from tpl")
    assert started.returncode == 0, started.stderr
    session = json.loads(started.stdout)
    assert session["name"] == "from tpl"
    assert session["segment_minutes"] == 1
    assert [(e["enclosure_id"], e["file_prefix"]) for e in session["enclosures"]] == [
        ("demo-01", "tpl1")
    ]
    shown = run_ctl(env, "sessions", "show", session["id"])
    assert shown.returncode == 0, shown.stderr
    assert "FIGURES" in shown.stdout
    assert "live" in shown.stdout
    assert run_ctl(env, "sessions", "cancel", session["id"]).returncode == 0
    cloned = run_ctl(env, "--json", "sessions", "clone", session["id"])
    assert cloned.returncode == 0, cloned.stderr
    clone = json.loads(cloned.stdout)
    assert clone["id"] != session["id"]
    assert clone["name"] == "from tpl"
    assert [(e["enclosure_id"], e["file_prefix"]) for e in clone["enclosures"]] == [
        ("demo-01", "tpl1")
    ]
    assert run_ctl(env, "sessions", "cancel", clone["id"]).returncode == 0
    shown = run_ctl(env, "sessions", "show", clone["id"])
    assert "evidence" in shown.stdout
    assert run_ctl(env, "templates", "delete", template_id).returncode == 0
    gone = run_ctl(env, "templates", "start", template_id)
    assert gone.returncode == 1
    assert "404" in one_error_line(gone)


def _api(
    demo: Demo, env: dict[str, str], method: str, path: str, **kwargs: object
) -> httpx.Response:
    token = json.loads(_credentials_file(env).read_text())["logins"][demo.base]["access_token"]
    return httpx.request(
        method,
        f"{demo.base}{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kwargs,  # type: ignore[arg-type]
    )


def test_alerts_list_and_ack(env: dict[str, str], demo: Demo) -> None:
    """An enclosure expected online that never connected raises an alert outside sessions;
    `alerts ack` acknowledges it for everybody."""
    registered = _api(
        demo, env, "POST", "/api/enclosures", json={"id": "ghost-07", "expected_online": True}
    )
    assert registered.status_code == 201, registered.text

    def raised() -> list[dict[str, object]]:
        listed = run_ctl(env, "--json", "alerts", "list", "--enclosure", "ghost-07")
        assert listed.returncode == 0, listed.stderr
        return [a for a in json.loads(listed.stdout) if a["kind"] == "enclosure_lost"]

    alert = wait_for(raised, timeout=30, message="no enclosure_lost alert for ghost-07")[0]
    assert alert["session_id"] is None
    assert alert["acknowledged"] is False
    table = run_ctl(env, "alerts", "list", "--unacked")
    assert table.returncode == 0, table.stderr
    assert str(alert["alert_id"]) in table.stdout
    assert "expected online" in table.stdout
    acked = run_ctl(env, "alerts", "ack", str(alert["alert_id"]))
    assert acked.returncode == 0, acked.stderr
    assert f"by {demo.email}" in acked.stdout
    after = run_ctl(env, "--json", "alerts", "list", "--unacked", "--enclosure", "ghost-07")
    assert json.loads(after.stdout) == []
    missing = run_ctl(env, "alerts", "ack", "disk_low:ghost-07:00000000")
    assert missing.returncode == 1
    assert "404" in one_error_line(missing)
    bad = run_ctl(env, "alerts", "ack", "../etc")
    assert bad.returncode == 2
    assert "not an alert id" in one_error_line(bad)
    _api(demo, env, "PATCH", "/api/enclosures/ghost-07", json={"expected_online": False})


def test_recordings_list_export_and_timeline(
    env: dict[str, str], demo: Demo, tmp_path: Path
) -> None:
    """A short session on a demo agent (real recording); its segment is then in the inventory
    across sessions, in both export formats, and on the enclosure's timeline."""
    created = run_ctl(
        env, "--json", "sessions", "create", "--name", "inventory", "--enclosure",
        "demo-02:inv", "--duration", "4", "--fps", "10",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    sid = str(json.loads(created.stdout)["id"])
    watched = run_ctl(env, "sessions", "watch", sid, timeout=90)
    assert watched.returncode == 0, watched.stdout + watched.stderr

    def listed() -> list[dict[str, object]]:
        result = run_ctl(env, "--json", "recordings", "list", "--session", sid)
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))

    items = wait_for(listed, timeout=30, message="no segment of the session in the inventory")
    assert {i["enclosure_id"] for i in items} == {"demo-02"}
    assert all(int(str(i["frames"])) > 0 and len(str(i["sha256"])) == 64 for i in items)
    table = run_ctl(env, "recordings", "list", "--enclosure", "demo-02")
    assert table.returncode == 0, table.stderr
    assert sid in table.stdout
    assert "segments" in table.stderr
    out = tmp_path / "segments.csv"
    exported = run_ctl(env, "recordings", "export", "--session", sid, "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("enclosure_id,session_id,session_name,path,")
    assert len(lines) == 1 + len(items)
    assert all(sid in line for line in lines[1:])
    as_json = run_ctl(env, "recordings", "export", "--session", sid, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert [r["sha256"] for r in json.loads(as_json.stdout)] == [i["sha256"] for i in items]
    timeline = run_ctl(env, "--json", "recordings", "timeline", "demo-02")
    assert timeline.returncode == 0, timeline.stderr
    spans = json.loads(timeline.stdout)["spans"]
    assert any(s["kind"] == "recorded" and s["session_id"] == sid for s in spans)
    bad = run_ctl(env, "recordings", "list", "--from", "tomorrow")
    assert bad.returncode == 2
    unknown = run_ctl(env, "recordings", "export", "--session", "no-such-session")
    assert unknown.returncode == 1
    assert "404" in one_error_line(unknown)


def test_mqtt_sub_shows_the_fleet_as_the_ui_does(env: dict[str, str], demo: Demo) -> None:
    """A fresh subscriber as the operator gets every enclosure's derived state, retained."""
    result = run_ctl(
        env,
        "mqtt",
        "sub",
        "service/fleet/+",
        "--count",
        str(len(ENCLOSURES)),
        "--json",
        "--broker",
        demo.broker_url(OPERATOR_USER),
    )
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(m["retain"] is True for m in messages)
    shown = {m["payload"]["enclosure_id"]: m["payload"] for m in messages}
    listed = {e["id"]: e for e in _api(demo, env, "GET", "/api/enclosures").json()["items"]}
    assert set(shown) <= set(listed)
    for eid, state in shown.items():
        assert state["state"] == listed[eid]["state"]
        assert state["since"]
