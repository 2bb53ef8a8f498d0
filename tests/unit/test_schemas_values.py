"""Plain values on the wire: no NaN or Infinity, no NUL character, bounded strings, anywhere
in any message (typed fields and free-form data alike); every refusal names the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from schemas import Ack, Event, MessageError, Status, parse_message
from schemas.types import MAX_REASON_LENGTH, MAX_TEXT_LENGTH
from tests.unit.schemas_samples import all_messages, status

MESSAGES = all_messages()


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _leaves(child, (*path, i))
    else:
        yield path, value


def _with(document: dict[str, Any], path: tuple[Any, ...], marker: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(document))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = marker
    return copy


def _cases(kind: str) -> list[tuple[type, str, tuple[Any, ...]]]:
    out = []
    for message in MESSAGES:
        document = json.loads(message.model_dump_json())
        for path, value in _leaves(document):
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if (kind == "number" and numeric) or (kind == "string" and isinstance(value, str)):
                out.append((type(message), json.dumps(document), path))
    return out


def _field(model: type, path: tuple[Any, ...]) -> str:
    return ".".join([model.label, *map(str, path)])  # type: ignore[attr-defined]


def _refused_naming(model: type, payload: str, path: tuple[Any, ...]) -> str:
    with pytest.raises(MessageError) as info:
        parse_message(model, payload)
    fields = dict(info.value.errors)
    assert _field(model, path) in fields, info.value.errors
    return fields[_field(model, path)]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(("model", "document", "path"), _cases("number"), ids=lambda v: str(v)[:40])
def test_a_number_that_is_not_finite_is_refused_naming_the_field(model, document, path, token):
    payload = json.dumps(_with(json.loads(document), path, "@@")).replace('"@@"', token)
    _refused_naming(model, payload, path)


@pytest.mark.parametrize(("model", "document", "path"), _cases("string"), ids=lambda v: str(v)[:40])
def test_a_nul_character_in_any_string_is_refused_naming_the_field(model, document, path):
    payload = json.dumps(_with(json.loads(document), path, "before\x00after"))
    assert "NUL" in _refused_naming(model, payload, path)


@pytest.mark.parametrize(("model", "document", "path"), _cases("string"), ids=lambda v: str(v)[:40])
def test_every_string_is_bounded(model, document, path):
    payload = json.dumps(_with(json.loads(document), path, "x" * (MAX_TEXT_LENGTH + 1)))
    if model is Ack and path[0] == "data":
        parse_message(model, payload)  # a snapshot's base64: bounded by the payload limit
        return
    if path[-1] in ("error", "last_error", "reason", "detail"):
        parse_message(model, payload)  # human reasons are cut instead (below)
        return
    _refused_naming(model, payload, path)


@pytest.mark.parametrize("field", ["event_id", "boot_id"])
def test_ids_are_bounded(field):
    model = Event if field == "event_id" else Status
    message = next(m for m in MESSAGES if isinstance(m, model))
    document = json.loads(message.model_dump_json())
    document[field] = "a" * 65
    assert "at most 64" in _refused_naming(model, json.dumps(document), (field,))


def test_free_form_data_and_params_are_checked_too():
    event = next(m for m in MESSAGES if isinstance(m, Event))
    document = json.loads(event.model_dump_json())
    document["data"]["extra"] = {"deep": [1, "@@"]}
    payload = json.dumps(document).replace('"@@"', "NaN")
    assert "finite" in _refused_naming(Event, payload, ("data", "extra", "deep", 1))
    document["data"]["extra"] = {"key\x00": 1}
    assert "NUL" in _refused_naming(Event, json.dumps(document), ("data", "extra", "key\x00"))


def test_a_long_reason_is_cut_not_refused():
    document = json.loads(status().model_dump_json())
    document["last_error"] = "disk trouble " + "x" * 5000
    parsed = parse_message(Status, json.dumps(document))
    assert parsed.last_error is not None
    assert len(parsed.last_error) == MAX_REASON_LENGTH
    assert parsed.last_error.startswith("disk trouble ")
    assert parsed.last_error.endswith("\u2026")
