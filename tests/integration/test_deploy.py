"""The shipped deployment files are valid: nginx accepts its config, systemd its units,
PostgreSQL its primary and standby settings (and streams with them), PgBouncer its ini (in
front of a real PostgreSQL, with the service's own writes), Erlang the EMQX ACL (as EMQX reads
it, with the rights the Mosquitto ACL grants)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

pytestmark = pytest.mark.slow  # nginx, systemd, a PostgreSQL primary and standby, PgBouncer, Erlang

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV = ROOT / ".venv"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=jaxmba.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    site = (DEPLOY / "nginx" / "jaxmba.conf").read_text()
    assert "proxy_buffering off" in site
    site = site.replace("/etc/jaxmba/tls/server.crt", str(cert)).replace(
        "/etc/jaxmba/tls/server.key", str(key)
    )
    (tmp_path / "jaxmba.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path};\n"
        f"  include {tmp_path}/jaxmba.conf;\n}}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    units = sorted((DEPLOY / "systemd").iterdir())
    assert {u.name for u in units} >= {"jaxmba-api.service", "jaxmba-bridge.service"}
    for unit in units:
        # The units name the production venv; point them at this checkout's to verify.
        text = unit.read_text().replace("/opt/jaxmba/.venv", str(VENV))
        assert "User=" in text or unit.suffix == ".path" or "reload" in unit.name
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *[str(tmp_path / u.name) for u in units]],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr, result.stderr
    assert "Unknown section" not in result.stderr, result.stderr


def test_wsgi_module_serves_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLASK_CONFIG", "test")
    monkeypatch.setenv("JAXMBA_DATABASE_URL", f"sqlite:///{tmp_path}/w.sqlite")
    import importlib

    import controlsvc.wsgi

    app = importlib.reload(controlsvc.wsgi).app
    assert app.test_client().get("/swagger.json").status_code == 200


@pytest.mark.skipif(not (VENV / "bin" / "uwsgi").exists(), reason="uWSGI (prod extra) missing")
def test_uwsgi_ini_serves_the_api(tmp_path: Path) -> None:
    import httpx

    from controlsvc.broker import find_free_port
    from tests.support.waiting import wait_for

    port = find_free_port()
    ini = (DEPLOY / "uwsgi" / "jaxmba.ini").read_text()
    ini = (
        ini.replace("/opt/jaxmba/.venv", str(VENV))
        .replace("/var/lib/jaxmba", str(tmp_path))
        .replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        .replace("JAXMBA_CONFIG=/etc/jaxmba/jax-mba-service.config", "JAXMBA_CONFIG=")
        .replace("FLASK_CONFIG=prod", "FLASK_CONFIG=test")
    )
    # The jaxmba user exists only on production hosts.
    ini = "\n".join(line for line in ini.splitlines() if not line.startswith(("uid", "gid")))
    (tmp_path / "uwsgi.ini").write_text(
        ini + f"\nenv = JAXMBA_DATABASE_URL=sqlite:///{tmp_path}/u.sqlite\n"
    )
    with (tmp_path / "uwsgi.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(VENV / "bin" / "uwsgi"), "--ini", str(tmp_path / "uwsgi.ini")],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:

        def spec_served() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/swagger.json", timeout=2).is_success
            except httpx.HTTPError:
                return False

        wait_for(spec_served, timeout=30, message=(tmp_path / "uwsgi.log").read_text()[-2000:])
    finally:
        # SIGINT: uWSGI's immediate shutdown (SIGTERM waits for the workers' graceful exit).
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- PostgreSQL: primary + streaming standby (deploy/postgresql, docs/scale.md) -----------------

PG_DEPLOY = DEPLOY / "postgresql"
STANDBY_NAME = "jaxmba_standby1"  # primary_slot_name, cluster_name, synchronous_standby_names
# The shipped files size memory for a 32 GB database host; a test cluster runs smaller.
SMALL = (
    "-c shared_buffers=128MB -c effective_cache_size=1GB -c maintenance_work_mem=64MB"
    " -c max_wal_size=1GB -c min_wal_size=80MB -c listen_addresses=127.0.0.1"
)


@pytest.fixture
def pg_workdir() -> Iterator[Path]:
    # Not tmp_path: the postgres user cannot reach pytest's root-only directories.
    workdir = Path(tempfile.mkdtemp(prefix="jaxmba-deploy-pg-"))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _programs(*names: str) -> dict[str, str]:
    from tests.support.postgres import pg_bin

    found = {name: pg_bin(name) for name in names}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        pytest.skip(f"PostgreSQL programs not installed: {', '.join(missing)}")
    return {name: path for name, path in found.items() if path is not None}


def _initdb(workdir: Path, initdb: str, run_as: list[str], *confs: str) -> Path:
    """A scratch cluster whose postgresql.conf includes copies of the shipped ``confs``."""
    datadir = workdir / "primary"
    subprocess.run(
        [*run_as, initdb, "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    for name in confs:
        copy = workdir / name
        shutil.copy(PG_DEPLOY / name, copy)
        with (datadir / "postgresql.conf").open("a") as conf:
            conf.write(f"include '{copy}'\n")
    return datadir


def _show(postgres: str, run_as: list[str], datadir: Path, name: str) -> str:
    result = subprocess.run(
        [*run_as, postgres, "-D", str(datadir), "-C", name], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_postgresql_confs_pass_postgres_check(pg_workdir: Path) -> None:
    from tests.support.postgres import as_postgres_user

    bins = _programs("initdb", "postgres")
    run_as = as_postgres_user(pg_workdir)
    confs = ("jaxmba-primary.conf", "jaxmba-standby.conf")
    datadir = _initdb(pg_workdir, bins["initdb"], run_as, *confs)
    # postgres -C parses every file (a misspelt name or a bad value is fatal) and prints one.
    assert _show(bins["postgres"], run_as, datadir, "wal_level") == "replica"
    assert _show(bins["postgres"], run_as, datadir, "synchronous_commit") == "on"
    assert STANDBY_NAME in _show(bins["postgres"], run_as, datadir, "synchronous_standby_names")
    assert _show(bins["postgres"], run_as, datadir, "primary_slot_name") == STANDBY_NAME
    assert _show(bins["postgres"], run_as, datadir, "hot_standby_feedback") == "on"
    # The check is a real one: a misspelt parameter in the same place is refused.
    with (pg_workdir / confs[0]).open("a") as conf:
        conf.write("wal_levle = replica\n")
    result = subprocess.run(
        [*run_as, bins["postgres"], "-D", str(datadir), "-C", "wal_level"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "wal_levle" in result.stderr


def test_primary_and_standby_stream_synchronously(pg_workdir: Path) -> None:
    """The shipped primary and standby settings, for real: a standby made the documented way
    (pg_basebackup -R -C -S) streams, is the synchronous standby the primary waits for, and
    serves what the primary committed."""
    from controlsvc.broker import find_free_port
    from tests.support.postgres import as_postgres_user
    from tests.support.waiting import wait_for

    bins = _programs("initdb", "pg_ctl", "pg_basebackup")
    run_as = as_postgres_user(pg_workdir)
    primary = _initdb(
        pg_workdir, bins["initdb"], run_as, "jaxmba-primary.conf", "jaxmba-standby.conf"
    )
    standby = pg_workdir / "standby"
    primary_port, standby_port = find_free_port(), find_free_port()
    started: list[Path] = []

    def start(datadir: Path, port: int) -> None:
        subprocess.run(
            [*run_as, bins["pg_ctl"], "-D", str(datadir), "-l", f"{datadir}.log", "-w",
             "-o", f"-p {port} -k {pg_workdir} {SMALL}", "start"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        started.append(datadir)

    def engine(port: int) -> Engine:
        url = URL.create("postgresql+psycopg2", "postgres", None, "127.0.0.1", port, "postgres")
        return create_engine(url, isolation_level="AUTOCOMMIT")

    try:
        start(primary, primary_port)
        subprocess.run(
            [*run_as, bins["pg_basebackup"], "-h", "127.0.0.1", "-p", str(primary_port),
             "-U", "postgres", "-D", str(standby), "-R", "-C", "-S", STANDBY_NAME, "-X", "stream"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        start(standby, standby_port)
        on_primary, on_standby = engine(primary_port), engine(standby_port)

        def replication() -> list[tuple[str, str, str]]:
            query = "SELECT application_name, state, sync_state FROM pg_stat_replication"
            with on_primary.connect() as conn:
                return [(r[0], r[1], r[2]) for r in conn.execute(text(query))]

        # The standby the primary's synchronous_standby_names waits for (a commit would
        # otherwise wait for ever, so this is checked first).
        wait_for(
            lambda: replication() == [(STANDBY_NAME, "streaming", "quorum")],
            timeout=30,
            message=lambda: f"pg_stat_replication on the primary: {replication()}",
        )
        with on_primary.connect() as conn:
            conn.execute(text("CREATE TABLE deploy_check (x int)"))
            conn.execute(text("INSERT INTO deploy_check VALUES (42)"))

        def replicated() -> bool:
            with on_standby.connect() as conn:
                tables = conn.execute(text("SELECT to_regclass('deploy_check')")).scalar()
                return (
                    tables is not None
                    and conn.execute(text("SELECT x FROM deploy_check")).scalar() == 42
                )

        wait_for(replicated, timeout=30, message="the standby never showed the primary's row")
        with on_standby.connect() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
        on_primary.dispose()
        on_standby.dispose()
    finally:
        for datadir in reversed(started):
            subprocess.run(
                [*run_as, bins["pg_ctl"], "-D", str(datadir), "-m", "immediate", "stop"],
                capture_output=True, check=False,
            )  # fmt: skip


# -- PgBouncer (deploy/pgbouncer) --------------------------------------------------------------


def _pgbouncer_ini(workdir: Path, target: URL, port: int) -> Path:
    """The shipped ini, pointed at ``target`` and at files in ``workdir``."""
    ini = (DEPLOY / "pgbouncer" / "pgbouncer.ini").read_text()
    assert re.search(r"^pool_mode = transaction$", ini, re.M)
    databases = f"jaxmba = host={target.host} port={target.port or 5432} dbname={target.database}\n"
    ini = re.sub(r"^jaxmba = .*\n", databases, ini, flags=re.M)
    ini = re.sub(r"^jaxmba_standby = .*\n", "", ini, flags=re.M)
    for key, value in {
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_file": str(workdir / "userlist.txt"),
        "logfile": str(workdir / "pgbouncer.log"),
        "pidfile": str(workdir / "pgbouncer.pid"),
    }.items():
        ini, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", ini, flags=re.M)
        assert count == 1, key
    path = workdir / "pgbouncer.ini"
    path.write_text(ini)
    return path


def test_pgbouncer_ini_pools_the_services_writes(pg_server: URL) -> None:
    """The shipped pgbouncer.ini (transaction pooling) in front of a real PostgreSQL, and the
    service's own writes through it: the bridge's Writer (row locks, multi-row INSERTs, the
    event log's transaction-level advisory lock), a session's creation (its advisory lock, bulk
    inserts) and the event feed's autocommit reads."""
    from controlsvc.bridge.inbound import Inbound
    from controlsvc.bridge.stats import BridgeStats
    from controlsvc.bridge.writer import Writer
    from controlsvc.broker import find_free_port
    from controlsvc.domain.enclosure_state import Liveness
    from controlsvc.store import eventlog, migrate
    from controlsvc.store.db import Database, utcnow
    from controlsvc.store.sessions import create_session
    from fleet_simulator.agent import AgentOptions, SimulatedAgent
    from schemas.enums import Lifecycle
    from schemas.rest.sessions import SessionCreate, SessionEnclosureIn
    from schemas.topics import Topics
    from tests.support.postgres import as_postgres_user, create_database, drop_database
    from tests.support.waiting import wait_for

    pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(pgbouncer).exists():
        pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")
    target = create_database(pg_server, prefix="jaxmba_pgbouncer")
    workdir = Path(tempfile.mkdtemp(prefix="jaxmba-pgbouncer-"))
    proc = None
    try:
        migrate.upgrade(migrate.alembic_config(target.render_as_string(hide_password=False)))
        user, password = target.username or "postgres", target.password or "pgbouncer-test"
        (workdir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        port = find_free_port()
        ini = _pgbouncer_ini(workdir, target, port)
        run_as = as_postgres_user(workdir)
        log, out = workdir / "pgbouncer.log", workdir / "pgbouncer.out"
        with out.open("wb") as stderr:
            proc = subprocess.Popen(
                [*run_as, pgbouncer, str(ini)], stdout=subprocess.DEVNULL, stderr=stderr
            )

        def up() -> bool:
            # pgbouncer refuses a bad ini at start and exits, saying why on stderr.
            assert proc.poll() is None, f"pgbouncer exited: {out.read_text()}"
            return log.exists() and "process up" in log.read_text()

        wait_for(up, timeout=30, message=lambda: out.read_text())
        through = URL.create("postgresql+psycopg2", user, password, "127.0.0.1", port, "jaxmba")
        database = Database(through)
        topics = Topics("jaxmba/v1")
        options = AgentOptions(topics=topics, agent_version="deploy", status_interval_s=5.0)
        agents = [SimulatedAgent(f"pool-{i}", options) for i in range(3)]
        writer = Writer(database, topics, Liveness(), BridgeStats())

        def inbound(topic: str, payload: bytes) -> Inbound:
            return Inbound(topic, payload, 1, False, utcnow())

        births = [inbound(a.state_topic, a.state_message(Lifecycle.READY).payload) for a in agents]
        writer.write(writer.parse(births))
        for _ in range(3):
            statuses = [inbound(a.status_topic, a.status_message().payload) for a in agents]
            writer.write(writer.parse(statuses))
        # A session over them: its creation takes a transaction-level advisory lock too.
        body = SessionCreate(
            name="through pgbouncer",
            enclosures=[SessionEnclosureIn(id=a.eid, file_prefix="m") for a in agents],
            duration_s=60,
        )
        with database.session() as session:
            created, desired = create_session(session, topics, body)
        assert len(desired) == len(agents)
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM status_history")).scalar() == 9
            assert conn.execute(
                text("SELECT count(*) FROM session_enclosures WHERE session_id = :id"),
                {"id": created.id},
            ).scalar() == len(agents)
            # Through PgBouncer: the server's client is PgBouncer, not this process.
            assert conn.execute(text("SELECT current_database()")).scalar() == target.database
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            from sqlalchemy.orm import Session

            with Session(bind=conn) as session:
                kinds = {row.kind for row in eventlog.since(session, 0, limit=100)}
        assert {"enclosure.state", "enclosure.status"} <= kinds
        database.dispose()
        assert "ERROR" not in log.read_text(), log.read_text()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
        drop_database(target)


# -- EMQX authorization (deploy/emqx/acl.conf) -------------------------------------------------

P = "jaxmba/v1"
OWN_PUBLISH = ("state", "status", "ack", "events", "preview")
OWN_READ = ("cmd", "desired")
# The rights of docs/protocol.md "Broker accounts", which deploy/mosquitto/acl grants (checked
# against a real Mosquitto in test_broker_security.py): (user, action, topic filter) -> allowed.
RIGHTS: dict[tuple[str, str, str], bool] = {
    **{("enc-01", "publish", f"{P}/enc/enc-01/{ch}"): True for ch in OWN_PUBLISH},
    **{("enc-01", "publish", f"{P}/enc/enc-01/{ch}"): False for ch in OWN_READ},
    **{("enc-01", "publish", f"{P}/enc/enc-02/{ch}"): False for ch in OWN_PUBLISH + OWN_READ},
    ("enc-01", "publish", f"{P}/service/state"): False,
    **{("enc-01", "subscribe", f"{P}/enc/enc-01/{ch}"): True for ch in OWN_READ},
    **{("enc-01", "subscribe", f"{P}/enc/enc-01/{ch}"): False for ch in OWN_PUBLISH},
    **{("enc-01", "subscribe", f"{P}/enc/enc-02/{ch}"): False for ch in OWN_READ},
    ("enc-01", "subscribe", f"{P}/service/state"): True,
    ("enc-01", "subscribe", f"{P}/service/alerts"): False,
    ("enc-01", "subscribe", f"{P}/#"): False,
    ("enc-01", "subscribe", f"{P}/enc/+/cmd"): False,
    ("jaxmba_service", "publish", f"{P}/enc/enc-01/cmd"): True,
    ("jaxmba_service", "publish", f"{P}/enc/enc-01/desired"): True,
    ("jaxmba_service", "publish", f"{P}/service/state"): True,
    ("jaxmba_service", "subscribe", f"{P}/#"): True,
    ("jaxmba_service", "subscribe", f"$share/controlsvc/{P}/enc/+/status"): True,
    ("jaxmba_service", "subscribe", "$SYS/#"): True,
    ("jaxmba_operator", "subscribe", f"{P}/#"): True,
    ("jaxmba_operator", "subscribe", "$SYS/#"): True,
    ("jaxmba_operator", "publish", f"{P}/enc/enc-01/cmd"): False,
    ("jaxmba_operator", "publish", f"{P}/enc/jaxmba_operator/status"): False,
    ("jaxmba_operator", "publish", f"{P}/service/state"): False,
}

# Prints each rule of an EMQX ACL file as one JSON line, read with file:consult as EMQX does.
CONSULT = r"""
{ok, Rules} = file:consult(Path),
Str = fun(S) -> "\"" ++ S ++ "\"" end,
Who = fun(all) -> "\"all\""; ({username, U}) -> Str(U) end,
Line = fun({P, W, A, Ts}) ->
             io_lib:format("[~s,~s,~s,[~s]]~n",
                           [Str(atom_to_list(P)), Who(W), Str(atom_to_list(A)),
                            lists:join(",", [Str(T) || T <- Ts])]);
          ({P, all}) -> io_lib:format("[~s,\"all\",\"all\",[\"#\"]]~n", [Str(atom_to_list(P))])
       end,
io:put_chars([Line(R) || R <- Rules]),
halt().
"""


def _covers(rule: str, wanted: str) -> bool:
    """Whether the rule's topic filter covers the wanted topic or filter (EMQX's match)."""
    rule_levels, wanted_levels = rule.split("/"), wanted.split("/")
    for i, level in enumerate(rule_levels):
        if level == "#":
            return True
        if i >= len(wanted_levels) or (level != "+" and level != wanted_levels[i]):
            return False
    return len(rule_levels) == len(wanted_levels)


def _emqx_decides(rules: list[list[object]], user: str, action: str, wanted: str) -> bool:
    for permission, who, rule_action, filters in rules:
        assert isinstance(filters, list)
        if who not in ("all", user) or rule_action not in ("all", action):
            continue
        if any(_covers(str(f).replace("${username}", user), wanted) for f in filters):
            return permission == "allow"
    return False  # authorization.no_match = deny


@pytest.mark.skipif(shutil.which("erl") is None, reason="Erlang (erl) is not installed")
def test_emqx_acl_grants_what_the_mosquitto_acl_grants(tmp_path: Path) -> None:
    acl = DEPLOY / "emqx" / "acl.conf"
    assert f'path = "/etc/emqx/{acl.name}"' in (DEPLOY / "emqx" / "emqx.conf").read_text()
    result = subprocess.run(
        ["erl", "-noshell", "-eval", f'Path = "{acl}", {CONSULT}'],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # a syntax error makes erl write its crash dump here
    )
    assert result.returncode == 0, result.stderr
    rules = [json.loads(line) for line in result.stdout.splitlines()]
    assert rules[-1] == ["deny", "all", "all", ["#"]]
    wrong = {
        key: allowed for key, allowed in RIGHTS.items() if _emqx_decides(rules, *key) != allowed
    }
    assert not wrong, f"EMQX would decide otherwise than the contract: {wrong}"
