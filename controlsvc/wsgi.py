"""WSGI entry point for uWSGI and other servers: `controlsvc.wsgi:app`.

Settings come from the config file ($JAXMBA_CONFIG or ./jax-mba-service.config) and the
environment, exactly as for `jaxmba-service`. Importing this module builds the app; nothing
else in the package does work at import.
"""

from __future__ import annotations

from controlsvc import metrics
from controlsvc.config.settings import load_settings
from controlsvc.ops.app import create_app

settings = load_settings()
metrics.setup_process(settings)
app = create_app(settings)
