"""What every command shares: the resolved service URL, output mode, timeout, the client."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from controlsvc.ctl.api_client import DEFAULT_URL, ApiClient
from controlsvc.ctl.tokens import TokenStore, normalize_url
from schemas.ids import validate_enclosure_id

__all__ = [
    "ENCLOSURE_ID",
    "CtlContext",
    "json_option",
    "parse_params",
    "pass_ctl",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class CtlContext:
    url_option: str | None
    as_json: bool
    timeout: float
    store: TokenStore = field(default_factory=TokenStore)
    _client: ApiClient | None = None

    @property
    def url(self) -> str:
        """``--url``, else ``JAXMBA_URL``, else the URL of the last login, else the default."""
        return normalize_url(self.url_option or self.store.default_url() or DEFAULT_URL)

    def client(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self.url, self.store, timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_ctl = click.make_pass_decorator(CtlContext)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_object(CtlContext).as_json = True  # type: ignore[union-attr]
    return value


def json_option(func: F) -> F:
    """``--json`` on a read command (the same as the global ``jaxmba-ctl --json``)."""
    return click.option(
        "--json",
        "as_json_local",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print JSON for scripts.",
    )(func)


class EnclosureIdType(click.ParamType[str, Any]):
    """An enclosure id, checked against the contract before any request."""

    name = "ENCLOSURE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return validate_enclosure_id(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


ENCLOSURE_ID = EnclosureIdType()


def parse_params(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    """``--param k=v``: the value as JSON when it parses (10, true, [1]), else as a string."""
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. --param duration_s=10)")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params
