"""Export the JSON Schema of every wire message into ``docs/protocol/``.

    python -m schemas.export [--out docs/protocol] [--doc docs/protocol.md]   write the files
    python -m schemas.export --check                                         exit 1 if stale

One file per message (``status.schema.json``, ...), per command's params
(``cmd.params.start_recording.schema.json``) and per event's data
(``event.data.segment_closed.schema.json``); sorted keys, two-space indent, trailing newline.
The field reference between the markers in ``docs/protocol.md`` is regenerated too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.commands import COMMAND_PARAMS
from schemas.events import EVENT_PAYLOADS
from schemas.messages import (
    Ack,
    Alert,
    Command,
    Desired,
    EnclosureStateMessage,
    Event,
    FleetState,
    LoggedEvent,
    ServiceEvents,
    ServiceState,
    TokensChanged,
)
from schemas.reference import render_reference, replace_section
from schemas.status import Status

__all__ = [
    "DEFAULT_DOC",
    "DEFAULT_OUT",
    "SUFFIX",
    "main",
    "reference_sections",
    "render",
    "schema_documents",
    "stale_files",
    "write",
]

DEFAULT_OUT = Path("docs/protocol")
DEFAULT_DOC = Path("docs/protocol.md")
SUFFIX = ".schema.json"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# file stem -> (model, where it travels)
_MESSAGES: dict[str, tuple[type[BaseModel], str]] = {
    "service_state": (ServiceState, "{prefix}/service/state"),
    "alert": (Alert, "{prefix}/service/alerts"),
    "fleet_state": (FleetState, "{prefix}/service/fleet/{eid}"),
    "service_events": (ServiceEvents, "{prefix}/service/events"),
    "service_auth": (TokensChanged, "{prefix}/service/auth"),
    "state": (EnclosureStateMessage, "{prefix}/enc/{eid}/state"),
    "status": (Status, "{prefix}/enc/{eid}/status"),
    "desired": (Desired, "{prefix}/enc/{eid}/desired"),
    "cmd": (Command, "{prefix}/enc/{eid}/cmd"),
    "ack": (Ack, "{prefix}/enc/{eid}/ack"),
    "event": (Event, "{prefix}/enc/{eid}/events"),
}


def _document(model: type[BaseModel], comment: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {"$schema": _DIALECT, "$comment": comment, **schema}


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every exported model."""
    docs: dict[str, dict[str, Any]] = {}
    for stem, (model, topic) in _MESSAGES.items():
        docs[stem + SUFFIX] = _document(model, f"Payload of {topic}")
    for kind, params in COMMAND_PARAMS.items():
        docs[f"cmd.params.{kind.value}{SUFFIX}"] = _document(
            params, f"params of a {kind.value} command (extra fields refused)"
        )
    for event_kind, payload in EVENT_PAYLOADS.items():
        docs[f"event.data.{event_kind.value}{SUFFIX}"] = _document(
            payload, f"data of a {event_kind.value} event"
        )
    return docs


def reference_sections() -> list[tuple[str, type[BaseModel]]]:
    """``(title, model)`` of every table in the generated field reference."""
    sections: list[tuple[str, type[BaseModel]]] = [
        (f"{stem}: `{topic}`", model) for stem, (model, topic) in _MESSAGES.items()
    ]
    sections.append(("service_events: each of `events`", LoggedEvent))
    sections += [
        (f"cmd params: `{kind.value}`", model)
        for kind, model in COMMAND_PARAMS.items()
        if model.model_fields
    ]
    sections += [(f"event data: `{kind.value}`", model) for kind, model in EVENT_PAYLOADS.items()]
    return sections


def _expected_doc(doc: Path) -> str:
    return replace_section(doc.read_text(encoding="utf-8"), render_reference(reference_sections()))


def render(document: dict[str, Any]) -> str:
    """Deterministic text of a schema document."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(out: Path, doc: Path | None = None) -> list[Path]:
    """Write every schema into ``out``, remove obsolete ones, regenerate ``doc``'s reference."""
    out.mkdir(parents=True, exist_ok=True)
    expected = {name: render(doc) for name, doc in schema_documents().items()}
    written = []
    for name, text in sorted(expected.items()):
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    for path in sorted(out.glob("*" + SUFFIX)):
        if path.name not in expected:
            path.unlink()
            written.append(path)
    if doc is not None:
        text = _expected_doc(doc)
        if doc.read_text(encoding="utf-8") != text:
            doc.write_text(text, encoding="utf-8")
            written.append(doc)
    return written


def stale_files(out: Path, doc: Path | None = None) -> list[str]:
    """Files in ``out`` (or ``doc``) that are missing, different from the models, or obsolete."""
    expected = {name: render(doc) for name, doc in schema_documents().items()}
    stale = []
    for name, text in sorted(expected.items()):
        path = out / name
        if not path.exists():
            stale.append(f"{name} (missing)")
        elif path.read_text(encoding="utf-8") != text:
            stale.append(f"{name} (differs)")
    present = {p.name for p in out.glob("*" + SUFFIX)} if out.is_dir() else set()
    stale.extend(f"{name} (obsolete)" for name in sorted(present - expected.keys()))
    if doc is not None:
        problem = _doc_problem(doc)
        if problem:
            stale.append(f"{doc} ({problem})")
    return stale


def _doc_problem(doc: Path) -> str | None:
    if not doc.exists():
        return "missing"
    try:
        expected = _expected_doc(doc)
    except ValueError as exc:
        return str(exc)
    if doc.read_text(encoding="utf-8") != expected:
        return "field reference differs"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export", description="Export the wire contract's JSON Schemas."
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--doc",
        type=Path,
        default=DEFAULT_DOC,
        help="markdown file whose generated field reference to update ('' to skip)",
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any file is stale"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    doc: Path | None = args.doc if str(args.doc) not in ("", ".") else None
    if args.check:
        stale = stale_files(out, doc)
        for line in stale:
            print(f"stale: {line}", file=sys.stderr)
        if stale:
            print("run: python -m schemas.export", file=sys.stderr)
            return 1
        return 0
    for path in write(out, doc):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
