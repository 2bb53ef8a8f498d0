"""Print what each fault case measured at the end of the run (docs/reliability.md's table)."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.faults.test_faults import FIGURES

    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault figures")
    write("case | detection s | events lost / duplicated | frames lost beyond downtime | run s")
    for f in FIGURES:
        detection = "-" if f.detection_s is None else f"{f.detection_s:g}"
        frames = ", ".join(f"{eid} {n}" for eid, n in f.frames_lost_beyond_downtime.items())
        write(
            f"{f.case} | {detection} | {f.events_lost} / {f.events_duplicated} | "
            f"{frames or '-'} | {f.run_s:g}"
        )
