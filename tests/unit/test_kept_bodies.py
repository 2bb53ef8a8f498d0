"""``KeptBodies``: a body kept per key for its settled version and no longer than its age."""

from __future__ import annotations

import gzip

from controlsvc.api.kept_bodies import KeptBodies
from tests.support.kept_bodies import ManualClock


def test_kept_for_its_settled_version_until_it_is_too_old() -> None:
    clock = ManualClock(50.0)
    kept = KeptBodies(1.0, clock=clock)
    assert kept.get("summary", "s1") is None
    built = kept.put("summary", "s1", 'W/"e1"', b'{"rows":[]}')
    assert kept.get("summary", "s1") is built
    assert kept.get("summary", "s2") is None  # another settled version: built anew
    clock.now += 0.999
    assert kept.get("summary", "s1") is built
    clock.now += 0.001
    assert kept.get("summary", "s1") is None
    assert kept.builds == 1


def test_the_newest_body_replaces_the_last() -> None:
    clock = ManualClock(50.0)
    kept = KeptBodies(1.0, clock=clock)
    kept.put("summary", "s1", 'W/"e1"', b"1")
    second = kept.put("summary", "s2", 'W/"e2"', b"2")
    assert kept.get("summary", "s1") is None
    assert kept.get("summary", "s2") is second
    kept.clear()
    assert kept.get("summary", "s2") is None
    assert kept.builds == 2


def test_each_key_keeps_its_own_body_and_the_least_recently_built_goes_first() -> None:
    kept = KeptBodies(1.0, entries=2, clock=ManualClock(50.0))
    a = kept.put("a", "v", 'W/"a"', b"a")
    b = kept.put("b", "v", 'W/"b"', b"b")
    assert kept.get("a", "v") is a
    assert kept.get("b", "v") is b
    a2 = kept.put("a", "v", 'W/"a2"', b"a2")  # built again: the newest
    kept.put("c", "v", 'W/"c"', b"c")  # one too many: b, built longest ago, goes
    assert kept.get("b", "v") is None
    assert kept.get("a", "v") is a2
    assert kept.get("c", "v") is not None


def test_zero_keeps_nothing() -> None:
    kept = KeptBodies(0.0, clock=ManualClock(50.0))
    built = kept.put("summary", "s1", 'W/"e1"', b"1")
    assert built.body == b"1"
    assert kept.get("summary", "s1") is None


def test_gzip_form_is_made_once_and_reads_back() -> None:
    body = b'{"rows":' + b"[1,2,3]," * 500 + b"[]}"
    kept = KeptBodies(1.0, gzip_level=1, clock=ManualClock(50.0))
    built = kept.put("summary", "s", 'W/"e"', body)
    packed = built.gzipped()
    assert built.gzipped() is packed
    assert gzip.decompress(packed) == body
    assert len(packed) < len(body) / 10
