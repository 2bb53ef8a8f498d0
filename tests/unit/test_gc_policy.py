"""The collector's settings of the long-running processes (controlsvc/ops/gc_policy.py)."""

from __future__ import annotations

import gc

from controlsvc.ops.gc_policy import THRESHOLDS, tune_gc


def test_tune_gc_freezes_what_exists_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0  # the modules and what they built: out of sight
        assert gc.isenabled()  # cycles are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
