"""deploy/nginx/jabs-ui.conf: nginx accepts it, and, run in front of the service, it serves
the original UI's build and routes the UI's root-relative calls and the devices' heartbeats
to the JABS layer."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database
from tests.integration.test_deploy import _self_signed
from tests.support.auth import Auth
from tests.support.server import serve
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed"),
    pytest.mark.slow,  # runs nginx in front of the service
]

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "jabs-ui.conf"
INDEX = "<!doctype html><title>JABS</title><app-root></app-root>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site(tmp_path: Path, api_port: int, http_port: int, https_port: int) -> Path:
    cert, key = _self_signed(tmp_path)
    root = tmp_path / "dist"
    root.mkdir()
    (root / "index.html").write_text(INDEX)
    (root / "main.js").write_text("console.log('ui')")
    text = CONF.read_text()
    text = (
        text.replace("server 127.0.0.1:5000;", f"server 127.0.0.1:{api_port};")
        .replace("/etc/jaxmba/tls/server.crt", str(cert))
        .replace("/etc/jaxmba/tls/server.key", str(key))
        .replace("/srv/jabs-ui/dist", str(root))
        .replace("    listen [::]:80;\n", "")
        .replace("    listen [::]:443 ssl;\n", "")
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    )
    (tmp_path / "jabs-ui.conf").write_text(text)
    conf = tmp_path / "nginx.conf"
    # As root, nginx's workers would drop to `nobody`, who cannot read the test's directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path};\n"
        f"  proxy_temp_path {tmp_path};\n"
        f"  include {tmp_path}/jabs-ui.conf;\n}}\n"
    )
    return conf


def test_nginx_t_accepts_the_config(tmp_path: Path) -> None:
    conf = site(tmp_path, 5000, 8080, 8443)
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@pytest.fixture
def settings(settings: Settings) -> Settings:
    jabs = settings.jabs.model_copy(
        update={"enabled": True, "trusted_proxies": "127.0.0.1/32", "heartbeat_networks": ""}
    )
    return settings.model_copy(update={"jabs": jabs})


@pytest.fixture
def app(settings: Settings, database: Database) -> Iterator[Flask]:
    app = create_app(settings, database=database)
    yield app
    app.extensions[PUBLISHER_KEY].close()


@pytest.fixture
def served(app: Flask) -> Iterator[int]:
    with serve(app) as url:
        yield int(url.rsplit(":", 1)[1])


def test_nginx_routes_the_ui_and_the_devices(
    tmp_path: Path, served: int, auth: Auth, database: Database
) -> None:
    http_port, https_port = free_port(), free_port()
    conf = site(tmp_path, served, http_port, https_port)
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(nginx.wait, 10)
        stack.callback(nginx.terminate)
        ui = stack.enter_context(
            httpx.Client(base_url=f"https://127.0.0.1:{https_port}", verify=False, timeout=10)
        )
        plain = stack.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10)
        )

        def up() -> bool:
            try:
                return ui.get("/").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=20, message="nginx did not come up")
        # The SPA: its files, and index.html for its deep links.
        assert ui.get("/").text == INDEX
        assert ui.get("/main.js").text == "console.log('ui')"
        for route in ("/dashboard", "/login", "/password-reset/3/abcdef"):
            assert ui.get(route).text == INDEX
        # The UI's root-relative calls reach the layer.
        admin = auth.admin()
        response = ui.post(
            "/auth/login", json={"email_address": admin.email, "password": admin.password}
        )
        assert response.status_code == 200
        access = response.json()["access"]
        devices = ui.get("/device", headers={"Authorization": f"Bearer {access}"})
        assert devices.status_code == 200
        assert devices.json() == []
        sessions = ui.get("/recording-session", headers={"Authorization": f"Bearer {access}"})
        assert sessions.json() == []
        assert ui.get("/api/device", headers={"Authorization": f"Bearer {access}"}).json() == []
        bad = ui.put("/user/1/change_password", json={})
        assert bad.status_code == 401
        assert "message" in bad.json()
        # Devices post plain HTTP to <api>/device/heartbeat; X-Real-IP names them.
        beat = {
            "name": "box-01",
            "sensor_status": {"camera": {"recording": False}},
            "system_info": {
                "release": "r",
                "uptime": 1,
                "load": 0.1,
                "free_ram": 1,
                "total_ram": 2,
                "free_disk": 1,
                "total_disk": 2,
            },
        }
        refused = plain.post("/api/device/heartbeat", json=beat)
        assert refused.status_code == 403
        assert "not registered" in refused.json()["message"]
        from controlsvc.compat.jabs import legacy

        with database.session() as session:
            token = legacy.register_legacy(session, "box-01").token
        refused = plain.post("/api/device/heartbeat", json=beat)
        assert refused.status_code == 403
        assert "127.0.0.1 is not in [JABS] heartbeat_networks" in refused.json()["message"]
        accepted = plain.post(f"/api/device-token/{token}/device/heartbeat", json=beat)
        assert accepted.status_code == 204
        accepted = ui.post(f"/api/device-token/{token}/device/heartbeat", json=beat)
        assert accepted.status_code == 204
        # Everything else on plain HTTP goes to HTTPS.
        assert plain.get("/dashboard").status_code == 301
