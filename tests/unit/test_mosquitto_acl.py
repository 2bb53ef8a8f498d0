"""The generated ACL (controlsvc.broker.render_acl) and the shipped deploy/mosquitto/acl."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlsvc.broker import DEFAULT_PREFIX, InvalidBrokerSetting, render_acl

SHIPPED_ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl"
RULE_RE = re.compile(r"(user \S+|(topic|pattern) (read|write|readwrite|deny) \S+)")


def rules(acl: str) -> list[str]:
    return [line for line in acl.splitlines() if line and not line.startswith("#")]


def blocks(acl: str) -> dict[str, list[str]]:
    """``topic`` rules per ``user`` block, and every ``pattern`` rule under ``"*"``."""
    out: dict[str, list[str]] = {"*": []}
    current = None
    for line in rules(acl):
        if line.startswith("user "):
            current = line.removeprefix("user ")
            out[current] = []
        elif line.startswith("pattern "):
            out["*"].append(line.removeprefix("pattern "))
        else:
            assert current is not None, f"topic rule for anonymous clients: {line}"
            out[current].append(line.removeprefix("topic "))
    return out


def test_shipped_acl_is_the_rendered_default() -> None:
    """deploy/mosquitto/acl must never drift from the generator: regenerate it with
    python -c 'from controlsvc.broker import render_acl; print(render_acl(), end="")'
    > deploy/mosquitto/acl"""
    assert SHIPPED_ACL.read_text() == render_acl()


def test_every_line_is_a_comment_or_a_rule() -> None:
    for line in rules(render_acl()):
        assert RULE_RE.fullmatch(line), line


def test_default_rules() -> None:
    acl = blocks(render_acl())
    assert acl["jaxmba_service"] == ["readwrite jaxmba/v1/#", "read $SYS/#"]
    assert acl["jaxmba_operator"] == [
        "deny jaxmba/v1/enc/jaxmba_operator/#",
        "read jaxmba/v1/#",
        "read $SYS/#",
    ]
    assert acl["*"] == [
        "write jaxmba/v1/enc/%u/state",
        "write jaxmba/v1/enc/%u/status",
        "write jaxmba/v1/enc/%u/ack",
        "write jaxmba/v1/enc/%u/events",
        "write jaxmba/v1/enc/%u/preview",
        "read jaxmba/v1/enc/%u/cmd",
        "read jaxmba/v1/enc/%u/desired",
        "read jaxmba/v1/service/state",
    ]


def test_no_account_but_the_service_may_write_outside_its_own_enclosure_subtree() -> None:
    acl = blocks(render_acl())
    for rule in acl["*"]:
        access, topic = rule.split(" ", 1)
        if access in ("write", "readwrite"):
            assert topic.startswith("jaxmba/v1/enc/%u/"), rule
    assert not any(r.startswith(("write", "readwrite")) for r in acl["jaxmba_operator"])


def test_custom_prefix_and_accounts() -> None:
    acl = render_acl("lab2/mba", "svc_main", "ops_ro")
    assert "jaxmba" not in "\n".join(rules(acl))
    parsed = blocks(acl)
    assert parsed["svc_main"][0] == "readwrite lab2/mba/#"
    assert parsed["ops_ro"][0] == "deny lab2/mba/enc/ops_ro/#"
    assert "write lab2/mba/enc/%u/status" in parsed["*"]


@pytest.mark.parametrize(
    "prefix", ["", "/jaxmba", "jaxmba/", "a//b", "a/+/b", "a/#", "$SYS/x", "a b", "per%u"]
)
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidBrokerSetting):
        render_acl(prefix)


def test_service_and_operator_names_must_not_be_possible_enclosure_ids() -> None:
    with pytest.raises(InvalidBrokerSetting, match="valid enclosure id"):
        render_acl(DEFAULT_PREFIX, "service", "jaxmba_operator")
    with pytest.raises(InvalidBrokerSetting, match="valid enclosure id"):
        render_acl(DEFAULT_PREFIX, "jaxmba_service", "operator-1")
    with pytest.raises(InvalidBrokerSetting, match="must differ"):
        render_acl(DEFAULT_PREFIX, "jaxmba_x", "jaxmba_x")
    with pytest.raises(InvalidBrokerSetting, match="user name"):
        render_acl(DEFAULT_PREFIX, "bad name", "jaxmba_operator")
