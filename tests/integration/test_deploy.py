"""The shipped deployment files are valid: nginx accepts its config, systemd its units."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

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
