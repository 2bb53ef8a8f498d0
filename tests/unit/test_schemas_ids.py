from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas import (
    DEFAULT_OPERATOR_USERNAME,
    DEFAULT_SERVICE_USERNAME,
    EnclosureId,
    is_enclosure_id,
    validate_enclosure_id,
)

VALID_IDS = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")


class Holder(BaseModel):
    eid: EnclosureId


@pytest.mark.parametrize("eid", ["a", "0", "enc-01", "a" * 63, "rack3-shelf2-left", "9-"])
def test_valid_ids_are_returned_unchanged(eid):
    assert validate_enclosure_id(eid) == eid
    assert is_enclosure_id(eid)
    assert Holder(eid=eid).eid == eid


@pytest.mark.parametrize(
    ("eid", "reason"),
    [
        ("", "must not be empty"),
        ("Enc-01", "use lowercase"),
        ("enc_01", "contains '_'"),
        ("enc/01", "contains '/'"),
        ("enc+", "contains '+'"),
        ("enc#", "contains '#'"),
        ("enc 01", "contains ' '"),
        ("-enc", "must start with"),
        ("a" * 64, "at most 63"),
        ("enc-01\n", "contains '\\n'"),
        ("énc", "contains 'é'"),
    ],
)
def test_invalid_ids_are_refused_with_the_reason(eid, reason):
    with pytest.raises(ValueError, match="enclosure id") as info:
        validate_enclosure_id(eid)
    assert reason in str(info.value)
    assert not is_enclosure_id(eid)


def test_non_strings_are_refused():
    with pytest.raises(ValueError, match="must be a string"):
        validate_enclosure_id(42)
    assert not is_enclosure_id(None)


def test_pydantic_field_names_the_problem():
    with pytest.raises(ValidationError, match="use lowercase"):
        Holder(eid="ENC")


def test_reserved_account_names_can_never_be_enclosure_ids():
    for name in (DEFAULT_SERVICE_USERNAME, DEFAULT_OPERATOR_USERNAME):
        assert not is_enclosure_id(name)
        with pytest.raises(ValueError, match="contains '_'"):
            validate_enclosure_id(name)


@given(VALID_IDS)
def test_generated_valid_ids_pass(eid):
    assert validate_enclosure_id(eid) == eid


@given(st.text(max_size=80))
def test_any_text_is_accepted_only_if_it_matches(text):
    ok = is_enclosure_id(text)
    if ok:
        assert validate_enclosure_id(text) == text
    else:
        with pytest.raises(ValueError, match="enclosure id"):
            validate_enclosure_id(text)
