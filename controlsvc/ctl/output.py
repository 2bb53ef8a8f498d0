"""Output: rich tables and key/value panels for people, JSON for scripts, human units."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = [
    "ago",
    "console",
    "dig",
    "err_console",
    "human_bytes",
    "human_seconds",
    "local_time",
    "parse_time",
    "print_json",
    "print_pairs",
    "print_table",
    "text",
]

console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """JSON on stdout (indented when stdout is a terminal, one line otherwise)."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(value, indent=indent, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None
) -> None:
    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_pairs(pairs: Iterable[tuple[str, str]], *, title: str | None = None) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, value)
    if title:
        console.print(f"[bold underline]{title}[/]")
    console.print(table)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def local_time(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    parsed = parse_time(value)
    return parsed.astimezone().strftime(fmt) if parsed else "-"


def human_seconds(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def ago(value: Any, now: datetime | None = None) -> str:
    parsed = parse_time(value)
    if parsed is None:
        return "never"
    delta = ((now or datetime.now(UTC)) - parsed).total_seconds()
    return f"{human_seconds(delta)} ago" if delta >= 0 else f"in {human_seconds(-delta)}"


def human_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` or None when any level is missing."""
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)
