"""Each module of the JABS layer imports on its own, first, in a fresh interpreter (its tables
once made an import cycle with ``controlsvc.store.models`` when imported before it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a fresh interpreter per module

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(
    f"controlsvc.compat.jabs.{path.stem}"
    for path in (ROOT / "controlsvc" / "compat" / "jabs").glob("*.py")
    if path.stem != "__init__"
) + ["controlsvc.store.models.jabs"]


@pytest.mark.parametrize("module", MODULES)
def test_imports_first(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
