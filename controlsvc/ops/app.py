"""The application factory. No I/O happens at import; `create_app` wires everything."""

from __future__ import annotations

import logging
import secrets as pysecrets
from pathlib import Path
from typing import Any

import flask_openapi3_swagger
from flask import Blueprint, redirect, render_template_string
from flask.typing import ResponseReturnValue
from flask_openapi3 import Info, OpenAPI
from flask_openapi3_swagger.templates import swagger_html_string

from controlsvc import __version__
from controlsvc.api import cors, http_cache, web
from controlsvc.api.errors import (
    document_uri_limit,
    document_validation_problems,
    register_error_handlers,
    validation_problem,
)
from controlsvc.api.proxies import TrustedProxyFix
from controlsvc.config.settings import Profile, Settings, load_settings
from controlsvc.store.db import Database
from schemas.rest.common import Problem

log = logging.getLogger(__name__)

SECURITY_SCHEMES = {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
SWAGGER_ASSETS = Path(flask_openapi3_swagger.__file__).parent / "templates" / "swagger"


def _swagger_ui() -> Blueprint:
    """Swagger UI at /swaggerui from the assets bundled in flask-openapi3-swagger (no CDN)."""
    bp = Blueprint(
        "swaggerui",
        __name__,
        static_folder=str(SWAGGER_ASSETS),
        static_url_path="/swaggerui/swagger",
    )

    @bp.get("/swaggerui")
    def swaggerui_redirect() -> Any:
        return redirect("/swaggerui/", code=308)

    @bp.get("/swaggerui/")
    def swaggerui() -> str:
        return render_template_string(
            swagger_html_string, doc_url="/swagger.json", swagger_config=None, oauth_config=None
        )

    return bp


def _secret(value: str, name: str, settings: Settings) -> str:
    if value:
        return value
    # dev/test only (prod refuses empty secrets while loading settings): tokens then last
    # only as long as this process, so say so.
    log.warning(
        "[SECRETS] %s is empty: using a random key for this process (run create_secrets)", name
    )
    return pysecrets.token_hex(32)


class _OpenAPI(OpenAPI):
    """flask-openapi3 documenting validation errors as the problem+json the API answers."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()  # type: ignore[no-untyped-call]
        document_validation_problems(self.spec_json, self.validation_error_status)
        document_uri_limit(self.spec_json)

    def dispatch_request(self) -> ResponseReturnValue:
        return web.dispatch_retrying_reads(super().dispatch_request)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> OpenAPI:
    settings = settings or load_settings()
    app = _OpenAPI(
        __name__,
        info=Info(title="JAX MBA control service", version=__version__),
        security_schemes=SECURITY_SCHEMES,  # type: ignore[arg-type]
        doc_ui=False,
        validation_error_status=422,
        # Registers the Problem schema that every error response refers to.
        validation_error_model=Problem,
        validation_error_callback=validation_problem,
    )
    app.config.update(
        SECRET_KEY=_secret(settings.secrets.secret_key.get_secret_value(), "secret_key", settings),
        JWT_SECRET_KEY=_secret(
            settings.secrets.jwt_secret_key.get_secret_value(), "jwt_secret_key", settings
        ),
        MAX_CONTENT_LENGTH=settings.service.max_request_bytes,
        TESTING=settings.profile is Profile.TEST,
        JSON_SORT_KEYS=False,
    )
    if settings.service.trusted_proxies:
        app.wsgi_app = TrustedProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, settings.service.proxy_networks(), settings.service.proxy_count
        )
    db = database or Database(settings.database.sqlalchemy_url(), echo=settings.database.echo)
    web.init_app(app, settings, db)
    cors.init_app(app, settings.service.cors_origin_set())
    register_error_handlers(app)

    from controlsvc.api import health

    app.register_api(health.bp)
    http_cache.init_app(app)  # before the request metrics, which then see its 304s
    _register_blueprints(app, settings)

    @app.get("/swagger.json", doc_ui=False)
    def swagger_json() -> Any:
        return app.json.response(app.api_doc)

    app.register_blueprint(_swagger_ui())
    return app


def _register_blueprints(app: OpenAPI, settings: Settings) -> None:
    """Every resource's blueprint; each module exposes `register(app, settings)`."""
    from controlsvc.api import (
        alerts,
        auth,
        bulk_commands,
        commands,
        enclosures,
        events,
        live,
        metrics,
        recordings,
        session_templates,
        sessions,
        ui,
        users,
    )

    for module in (
        auth,
        users,
        enclosures,
        commands,
        bulk_commands,
        events,
        live,
        sessions,
        session_templates,
        recordings,
        alerts,
        metrics,
        ui,
    ):
        module.register(app, settings)
    from controlsvc.compat.jabs import api as jabs

    jabs.register(app, settings)
