"""bench/profile_report.py: py-spy's collapsed stacks into CPU by area and by function."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _module():  # bench/ is scripts, not a package
    spec = importlib.util.spec_from_file_location("profile_report", BENCH / "profile_report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("profile_report", module)
    spec.loader.exec_module(module)
    return module


PROFILE = """\
process 1:"python api";Thread.run (threading.py:982);send_command (controlsvc/api/commands.py:90);Session.execute (sqlalchemy/orm/session.py:2300);do_execute (sqlalchemy/engine/default.py:900) 30
process 1:"python api";Thread.run (threading.py:982);send_command (controlsvc/api/commands.py:90);publish (controlsvc/mqtt/publisher.py:200) 10
process 1:"python api";Thread.run (threading.py:982);get_command (controlsvc/api/commands.py:150);loads (json/decoder.py:337) 20
process 1:"python api";<module> (/opt/app/boot.py:1) 40
"""  # noqa: E501


def test_areas_name_our_modules_libraries_and_the_standard_library():
    report = _module()
    assert report.area("controlsvc/api/commands.py") == "controlsvc.api.commands"
    assert report.area("/work/x/controlsvc/store/db.py") == "controlsvc.store.db"
    assert report.area("sqlalchemy/engine/default.py") == "sqlalchemy"
    assert report.area("/v/lib/python3.11/site-packages/paho/mqtt/client.py") == "paho"
    assert report.area("json/decoder.py") == "json"
    assert report.area("threading.py") == "threading"
    assert report.area("/opt/app/boot.py") == "boot"


def test_within_keeps_one_views_stacks_and_per_divides(tmp_path):
    report = _module()
    path = tmp_path / "api.txt"
    path.write_text(PROFILE)
    text = report.report(path, ["send_command"], per=10, top=5, rate=100)
    # 40 samples at 100 Hz = 0.4 s, over 10 units = 40 ms each; the other stacks are out.
    assert "40 samples = 0.40 s of CPU within send_command; 40.00 ms per unit" in text
    assert "| `sqlalchemy` | 75.0% | 30.00 |" in text
    assert "| `controlsvc.mqtt.publisher` | 25.0% | 10.00 |" in text
    assert "| `controlsvc.api.commands:send_command` | 100.0% | 40.00 |" in text
    assert "| `sqlalchemy:Session.execute` | 75.0% | 30.00 |" in text  # where we call in
    assert "json" not in text
    assert "boot" not in text
    assert "no samples within nothing_here" in report.report(path, ["nothing_here"], 1, 5, 100)
