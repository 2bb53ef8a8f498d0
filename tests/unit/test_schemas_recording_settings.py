"""The recording settings mean the same in a session, a start_recording command and a desired
document: the same limits, strict booleans and one segment policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import DesiredRecording, StartRecordingParams
from schemas.recording_settings import ONE_SEGMENT_POLICY
from schemas.rest.sessions import SessionCreate
from tests.unit.schemas_samples import T0

BASES: dict[type[BaseModel], dict[str, Any]] = {
    StartRecordingParams: {"session_id": "s1", "file_prefix": "p", "duration_s": 60},
    DesiredRecording: {
        "session_id": "s1",
        "file_prefix": "p",
        "start_at": T0,
        "end_at": T0 + timedelta(minutes=1),
    },
    SessionCreate: {
        "name": "n",
        "enclosures": [{"id": "enc-1", "file_prefix": "p"}],
        "duration_s": 60,
    },
}
MODELS = list(BASES)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_defaults_are_the_agents(model: type[BaseModel]) -> None:
    parsed = model.model_validate(BASES[model])
    assert (parsed.target_fps, parsed.segment_minutes) == (None, None)  # type: ignore[attr-defined]
    assert (parsed.fragment_hourly, parsed.apply_filter) == (False, False)  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fragment_hourly", "yes"),
        ("fragment_hourly", 1),
        ("apply_filter", "true"),
        ("apply_filter", 0),
        ("target_fps", 0),
        ("target_fps", 121),
        ("segment_minutes", 0),
        ("segment_minutes", 1441),
    ],
)
def test_each_refuses_the_same_values_naming_the_field(
    model: type[BaseModel], field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**BASES[model], field: value})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_refuses_two_segment_policies(model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError, match=ONE_SEGMENT_POLICY):
        model.model_validate({**BASES[model], "fragment_hourly": True, "segment_minutes": 5})


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_describes_the_fields_alike(model: type[BaseModel]) -> None:
    ours = {
        name: model.model_fields[name].description
        for name in ("target_fps", "fragment_hourly", "segment_minutes", "apply_filter")
    }
    assert ours == {name: StartRecordingParams.model_fields[name].description for name in ours}
