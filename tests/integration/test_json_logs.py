"""JSON log lines (schemas.logs): the fields, the ids from a log call, from the context (an API
request's path, a command being handled) and from the process (an agent's enclosure)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from flask import Flask

from schemas.logs import JsonFormatter, bind, log_ids


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("api", static={"enclosure_id": "static-01"}))
    logger = logging.getLogger("jaxmba.test.jsonlogs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_fields_and_where_the_ids_come_from(captured):
    logger, stream = captured
    logger.info("plain %s", "text")
    logger.warning("explicit", extra=log_ids(enclosure_id="enc-a", command_id="c-1"))
    with bind(session_id="s-1", command_id="c-2"):
        logger.info("bound")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    plain, explicit, bound, failed = _lines(stream)
    assert plain["message"] == "plain text"
    assert plain["level"] == "INFO"
    assert plain["logger"] == "jaxmba.test.jsonlogs"
    assert plain["process"] == "api"
    assert plain["ts"].endswith("+00:00")
    assert plain["enclosure_id"] == "static-01"  # the process's own enclosure
    assert "session_id" not in plain
    assert (explicit["enclosure_id"], explicit["command_id"]) == ("enc-a", "c-1")
    assert (bound["session_id"], bound["command_id"]) == ("s-1", "c-2")
    assert "ValueError: boom" in failed["exc"]


def test_an_api_request_binds_the_ids_of_its_path(app: Flask, captured):
    logger, stream = captured

    def probe(**_kw: str) -> str:
        logger.info("inside the request")
        return "ok"

    app.add_url_rule("/api/enclosures/<eid>/log-probe", "probe_enc", probe)
    app.add_url_rule("/api/sessions-log-probe/<id>", "probe_plain", probe)
    client = app.test_client()
    assert client.get("/api/enclosures/enc-b/log-probe").status_code == 200
    assert client.get("/api/sessions-log-probe/xyz").status_code == 200  # "id" outside sessions
    logger.info("after the request")
    inside, plain_id, after = _lines(stream)
    assert inside["enclosure_id"] == "enc-b"
    assert "session_id" not in plain_id
    assert after["enclosure_id"] == "static-01"  # the binding ended with the request
