"""Errors of the control service.

JaxmbaError                 base of everything raised on purpose
├── ConfigError             bad or missing configuration (CLI prints it, exits 2)
└── DomainError             a request the domain refuses (mapped to problem+json)
    ├── NotFound            404: unknown id
    ├── Conflict            409: the state forbids it (already exists, finished, ...)
    ├── Forbidden           403: authenticated but not allowed
    ├── Unauthorized        401: missing, bad, expired or revoked credentials
    ├── InvalidInput        422: a value the domain refuses, naming the field
    └── Unavailable         503: a dependency (database, broker) cannot be reached
"""

from __future__ import annotations


class JaxmbaError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(JaxmbaError):
    """The configuration is missing or invalid; the message names section, key and reason."""


class DomainError(JaxmbaError):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class InvalidInput(DomainError):
    status = 422
    title = "Invalid input"


class Unavailable(DomainError):
    status = 503
    title = "Service unavailable"
