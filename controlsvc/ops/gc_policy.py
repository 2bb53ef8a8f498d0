"""How the service's long-running processes (the bridge, the API's workers) use the garbage
collector.

They make many short-lived objects per message or request (JSON, pydantic models, ORM state),
so CPython's default gen-0 threshold (700 allocations) runs the collector every few messages,
and each older-generation pass walks every long-lived object: the modules, SQLAlchemy's and
pydantic's schemas, the app. Moving what exists once a process is built out of the collector's
sight (``gc.freeze``) and collecting the youngest generation every 10,000 allocations cut the
bridge's writer's CPU per status by about a fifth (bench/writer.py, docs/benchmarks.md).
Reference cycles are still collected, later. Processes inside tests keep the defaults.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_gc"]

THRESHOLDS = (10_000, 50, 100)


def tune_gc() -> None:
    """Call once the process has imported and built what it keeps for its lifetime."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
