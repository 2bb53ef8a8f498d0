"""What the API's two endless responses share: the event stream (events.py) and the live view
(live.py).

Who may open one: a single-use ticket from POST /api/events/ticket (a browser's EventSource and
an ``<img>`` cannot send headers) or a bearer token, and never a token in the URL, which would
end up in access logs. How many streams one worker serves, their headers, and noticing that the
client has gone.
"""

from __future__ import annotations

import socket
from typing import Any

from flask import request
from flask_jwt_extended import verify_jwt_in_request
from pydantic import BaseModel, ConfigDict, Field

from controlsvc.api import tokens
from controlsvc.api.errors import problem
from controlsvc.api.web import db_session
from controlsvc.config.settings import Settings
from controlsvc.domain.errors import Unauthorized
from controlsvc.store import eventlog
from controlsvc.store.models.users import User

__all__ = [
    "RESERVED_THREADS",
    "STREAM_HEADERS",
    "TOKEN_PARAMS",
    "TicketQuery",
    "client_gone",
    "client_socket",
    "max_streams",
    "stream_user",
    "token_in_url_refused",
]

# Threads of a worker kept for ordinary requests: streams beyond threads minus this are refused.
RESERVED_THREADS = 8
# Query parameters that would put a long-lived token in a URL (and so in access logs).
TOKEN_PARAMS = ("token", "access_token", "jwt", "authorization")
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each part on at once
}


class TicketQuery(BaseModel):
    """The query of a stream: a `?ticket=` for clients that cannot send headers."""

    model_config = ConfigDict(extra="ignore")

    ticket: str | None = Field(
        None,
        max_length=eventlog.TICKET_MAX_LENGTH,
        description="A ticket from POST /api/events/ticket, for clients that cannot send "
        "headers (EventSource, an `<img>`); works once",
    )


def token_in_url_refused() -> Any:
    """A 400 problem when the query carries a token, else None."""
    if not any(name in request.args for name in TOKEN_PARAMS):
        return None
    return problem(
        400,
        "Token in URL refused",
        "never put an access token in a URL (it ends up in logs): send it as "
        "'Authorization: Bearer <token>', or get a single-use ticket from "
        "POST /api/events/ticket and pass ?ticket=",
    )


def stream_user(ticket: str | None) -> User:
    """The user of `ticket` (spent now; the caller commits) or of the bearer token; any role."""
    if ticket is not None:
        user = eventlog.redeem_ticket(db_session(), ticket)
        if user is None:
            raise Unauthorized(
                "the ticket is unknown, used or expired; get a new one from POST /api/events/ticket"
            )
        return user
    verify_jwt_in_request(locations=["headers"])
    return tokens.current_user()


def max_streams(settings: Settings) -> int:
    """How many endless responses of one kind a worker serves at once."""
    return max(1, settings.service.threads - RESERVED_THREADS)


def client_socket() -> Any:
    """The request's socket (gunicorn or werkzeug), to notice a client gone; None elsewhere."""
    return request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")


def client_gone(sock: Any) -> bool:
    """True when the client has closed its side (the socket reads EOF without blocking)."""
    if not isinstance(sock, socket.socket):
        return False
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except (ValueError, NotImplementedError):  # TLS sockets cannot peek: rely on heartbeats
        return False
    except OSError:
        return True
    return data == b""
