#!/usr/bin/env python
"""Tables from a profile that a bench's ``--profile DIR`` recorded (py-spy's collapsed stacks).

    .venv/bin/python bench/command_rtt.py --quick --profile /tmp/prof
    .venv/bin/python bench/profile_report.py /tmp/prof/api.txt --within send_command --per 220
    .venv/bin/python bench/profile_report.py /tmp/prof/bridge.txt --within Bridge._process

py-spy samples a thread only while it runs on a CPU, so a sample is CPU time (1 / the rate).
``--within`` keeps the stacks that pass through a frame of that name (``function`` or
``Class.method``; repeat it for several), e.g. one view, so that start-up and other work do not
dilute the table; ``--per`` divides by the units of work the run did (the warm-up included:
the profile covers the whole run) to give milliseconds per unit.

Three tables, in Markdown: CPU by *area* (the package a sample's innermost frame is in: our
modules by name, a library by its package, the standard library by module), and our functions
and the libraries' entry points by *inclusive* CPU (a sample counts once for each function on
its stack).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

OURS = ("controlsvc", "schemas", "enclosure_agent", "fleet_simulator")
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
DEFAULT_RATE_HZ = 250  # bench/_support.py PROFILE_RATE_HZ


def _frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) of each Python frame, outermost first (py-spy's process labels out)."""
    out = []
    for part in stack.split(";"):
        match = FRAME.match(part)
        if match is not None:
            out.append((match["func"], match["file"]))
    return out


def area(file: str) -> str:
    """Where a frame's code lives: ``controlsvc.api.tokens``, ``sqlalchemy``, ``json``...

    py-spy names a library's or the standard library's file from its package down
    (``sqlalchemy/engine/default.py``, ``threading.py``), and other files by their full path.
    """
    path = file.replace("\\", "/")
    for root in OURS:
        marker = f"{root}/"
        if path.startswith(marker) or f"/{marker}" in path:
            tail = path[path.rfind(marker) :]
            return tail.removesuffix(".py").replace("/", ".")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    if path.startswith(("/", "<")):
        return path.rsplit("/", 1)[-1].removesuffix(".py")
    return path.split("/", 1)[0].removesuffix(".py")


def is_ours(file: str) -> bool:
    return area(file).split(".", 1)[0] in OURS


def read(path: Path, within: list[str]) -> Counter[tuple[tuple[str, str], ...]]:
    stacks: Counter[tuple[tuple[str, str], ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = tuple(_frames(stack))
        if within and not any(func in within for func, _file in frames):
            continue
        stacks[frames] += int(count)
    return stacks


def _table(title: str, rows: list[tuple[str, int]], total: int, per: float, rate: float) -> str:
    lines = [f"| {title} | CPU share | ms per unit |", "|---|---:|---:|"]
    for name, samples in rows:
        ms = samples / rate * 1000 / per
        lines.append(f"| `{name}` | {samples / total:.1%} | {ms:.2f} |")
    return "\n".join(lines)


def report(path: Path, within: list[str], per: float, top: int, rate: float) -> str:
    stacks = read(path, within)
    total = sum(stacks.values())
    if not total:
        return f"{path}: no samples" + (f" within {', '.join(within)}" if within else "")
    by_area: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    entries: Counter[str] = Counter()
    for frames, samples in stacks.items():
        if frames:
            by_area[area(frames[-1][1])] += samples
        seen: set[str] = set()
        previous_ours = True
        for func, file in frames:
            key = f"{area(file)}:{func}"
            if is_ours(file):
                if key not in seen:
                    ours[key] += samples
                    seen.add(key)
                previous_ours = True
            else:
                if previous_ours and key not in seen:
                    entries[key] += samples  # where our code calls into a library
                    seen.add(key)
                previous_ours = False
    cpu_s = total / rate
    head = (
        f"{path.name}: {total} samples = {cpu_s:.2f} s of CPU"
        + (f" within {', '.join(within)}" if within else "")
        + (f"; {cpu_s * 1000 / per:.2f} ms per unit over {per:g} units" if per != 1 else "")
    )
    return "\n\n".join(
        [
            head,
            _table("area (innermost frame)", by_area.most_common(top), total, per, rate),
            _table("our function (inclusive)", ours.most_common(top), total, per, rate),
            _table("library entry (inclusive)", entries.most_common(top), total, per, rate),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="a collapsed-stacks file (py-spy --format raw)")
    parser.add_argument("--within", action="append", default=[], metavar="FUNC")
    parser.add_argument("--per", type=float, default=1.0, help="units of work in the run")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE_HZ, help="py-spy's --rate")
    args = parser.parse_args()
    if args.per <= 0 or args.top <= 0 or args.rate <= 0:
        parser.error("--per, --top and --rate must be positive")
    if not args.profile.is_file():
        parser.error(f"{args.profile}: no such file")
    print(report(args.profile, args.within, args.per, args.top, args.rate))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
