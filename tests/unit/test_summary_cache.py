"""``SummaryCache``: a body kept for its settled version and no longer than its age."""

from __future__ import annotations

import gzip

from controlsvc.api.summary_cache import SummaryCache


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_kept_for_its_settled_version_until_it_is_too_old() -> None:
    clock = Clock()
    cache = SummaryCache(1.0, clock=clock)
    assert cache.get("s1") is None
    built = cache.put("s1", 'W/"e1"', b'{"rows":[]}')
    assert cache.get("s1") is built
    assert cache.get("s2") is None  # another settled version: built anew
    clock.now += 0.999
    assert cache.get("s1") is built
    clock.now += 0.001
    assert cache.get("s1") is None
    assert cache.builds == 1


def test_the_newest_body_replaces_the_last() -> None:
    clock = Clock()
    cache = SummaryCache(1.0, clock=clock)
    cache.put("s1", 'W/"e1"', b"1")
    second = cache.put("s2", 'W/"e2"', b"2")
    assert cache.get("s1") is None
    assert cache.get("s2") is second
    cache.clear()
    assert cache.get("s2") is None
    assert cache.builds == 2


def test_zero_keeps_nothing() -> None:
    cache = SummaryCache(0.0, clock=Clock())
    built = cache.put("s1", 'W/"e1"', b"1")
    assert built.body == b"1"
    assert cache.get("s1") is None


def test_gzip_form_is_made_once_and_reads_back() -> None:
    body = b'{"rows":' + b"[1,2,3]," * 500 + b"[]}"
    built = SummaryCache(1.0, gzip_level=1, clock=Clock()).put("s", 'W/"e"', body)
    packed = built.gzipped()
    assert built.gzipped() is packed
    assert gzip.decompress(packed) == body
    assert len(packed) < len(body) / 10
