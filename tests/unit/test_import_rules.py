"""The import rules of controlsvc's layout (docs/development.md, "Layout"): the import-linter
contracts in pyproject.toml hold, and a module that imports up a layer breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(cwd / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    result = _lint_imports(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "controlsvc",
        tmp_path / "controlsvc",
        ignore=shutil.ignore_patterns("__pycache__", "static", "data"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_an_import_up_a_layer_breaks_the_layers(tmp_path: Path) -> None:
    copy = _copy_of_the_package(tmp_path)
    db = copy / "controlsvc" / "store" / "db.py"
    db.write_text(db.read_text() + "\nfrom controlsvc.api import web  # noqa: E402\n")
    result = _lint_imports(copy, copy)
    assert result.returncode != 0
    assert "controlsvc.store.db -> controlsvc.api.web" in result.stdout


def test_a_circle_breaks_the_acyclic_rule(tmp_path: Path) -> None:
    copy = _copy_of_the_package(tmp_path)
    state = copy / "controlsvc" / "domain" / "session_state.py"
    state.write_text(state.read_text() + "\nfrom controlsvc.domain import mail  # noqa: E402\n")
    mail = copy / "controlsvc" / "domain" / "mail.py"
    back = "\nfrom controlsvc.domain import session_state  # noqa: E402\n"
    mail.write_text(mail.read_text() + back)
    result = _lint_imports(copy, copy)
    assert result.returncode != 0
    assert "No cycles are allowed in controlsvc.domain" in result.stdout


# A module longer than this is split along a real seam (docs/development.md, "Layout").
MAX_MODULE_LINES = 600


def test_no_module_is_over_the_line_limit() -> None:
    packages = ("controlsvc", "enclosure_agent", "schemas", "fleet_simulator")
    long = {
        str(path.relative_to(ROOT)): lines
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
