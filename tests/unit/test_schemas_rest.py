from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from schemas.rest import (
    CommandCreate,
    CommandOut,
    CommandWaitQuery,
    EnclosureCreate,
    EnclosureListQuery,
    EnclosureOut,
    EnclosurePatch,
    EnclosureRegistered,
    Page,
    PageQuery,
    Problem,
    StatusHistoryItem,
    StatusHistoryQuery,
    field_errors,
)
from tests.unit.schemas_samples import T0, status


def _errors(model, data):
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return {e.field: e.message for e in field_errors(info.value)}


def test_command_create_defaults():
    body = CommandCreate.model_validate({"kind": "ping"})
    assert body.params == {}
    assert body.timeout_s == 30


def test_command_create_names_params_fields():
    errors = _errors(
        CommandCreate,
        {"kind": "start_recording", "params": {"session_id": "s", "duration_s": -1, "x": 1}},
    )
    assert errors == {
        "params.file_prefix": "Field required",
        "params.duration_s": "Input should be greater than 0",
        "params.x": "Extra inputs are not permitted",
    }


def test_command_create_refuses_unknown_fields_and_bad_timeouts():
    errors = _errors(CommandCreate, {"kind": "ping", "timeout_s": 0, "wait": 1})
    assert set(errors) == {"timeout_s", "wait"}
    assert "kind" in _errors(CommandCreate, {"kind": "explode"})
    assert "timeout_s" in _errors(CommandCreate, {"kind": "ping", "timeout_s": 3601})


def test_command_create_whole_params_error():
    errors = _errors(CommandCreate, {"kind": "set_config", "params": {}})
    assert errors == {"params": "set_config needs at least one setting"}


def test_enclosure_create_validates_the_id():
    errors = _errors(EnclosureCreate, {"id": "Bad_Id"})
    assert "use lowercase" in errors["id"]
    assert EnclosureCreate(id="enc-01").name is None
    assert "extra" in _errors(EnclosureCreate, {"id": "e1", "extra": 1})


def test_enclosure_patch():
    patch = EnclosurePatch.model_validate({"location": None, "notes": "n"})
    assert patch.changes() == {"location": None, "notes": "n"}
    assert EnclosurePatch().changes() == {}
    assert _errors(EnclosurePatch, {"name": None}) == {"": "name cannot be cleared"}
    assert "id" in _errors(EnclosurePatch, {"id": "x"})


def test_enclosure_out_from_attributes():
    row = SimpleNamespace(
        id="enc-01",
        name="Enclosure 1",
        location="room 2",
        notes=None,
        state="recording",
        lifecycle="ready",
        last_seen_at=T0,
        state_changed_at=T0,
        boot_id="b",
        agent_version="1.0",
        status=status(),
        registered_at=T0,
        retired=False,
    )
    out = EnclosureOut.model_validate(row)
    assert out.status == status()
    registered = EnclosureRegistered(**out.model_dump(), broker_password="pw")
    assert registered.broker_password == "pw"
    page = Page[EnclosureOut](items=[out], next_cursor=None)
    assert Page[EnclosureOut].model_validate_json(page.model_dump_json()) == page


def test_command_out():
    out = CommandOut(
        id=uuid.uuid4(),
        enclosure_id="enc-01",
        kind="ping",
        state="sent",
        created_at=T0,
        deadline_at=T0 + timedelta(seconds=30),
        enclosure_state="lost",
    )
    assert CommandOut.model_validate_json(out.model_dump_json()) == out


def test_queries():
    assert PageQuery().limit == 50
    assert "limit" in _errors(PageQuery, {"limit": 501})
    assert EnclosureListQuery.model_validate({"state": "idle", "q": "rack"}).state == "idle"
    assert _errors(StatusHistoryQuery, {"since": T0, "until": T0}) == {
        "": "until must be after since"
    }
    assert "wait" in _errors(CommandWaitQuery, {"wait": 61})
    item = StatusHistoryItem(at=T0, boot_id="b", seq=0, status=status())
    assert item.status.seq == 0


def test_problem():
    problem = Problem(title="Invalid", status=422, errors=[{"field": "id", "message": "bad"}])
    document = problem.model_dump()
    assert document["type"] == "about:blank"
    assert document["errors"] == [{"field": "id", "message": "bad"}]
