"""The API under gunicorn for the benchmarks: ``controlsvc.ops.runner.gunicorn_options`` without
the access log (one line per request would cost the workers more than some requests do).

    python bench/_api_server.py HOST PORT WORKERS     (settings from JAXMBA_* variables)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gunicorn.app.base import BaseApplication  # noqa: E402

from controlsvc.config.settings import Settings, load_settings  # noqa: E402
from controlsvc.ops.runner import gunicorn_options  # noqa: E402


class BenchApi(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from controlsvc.ops.app import create_app

        return create_app(self._settings)


def main() -> None:
    host, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    settings = load_settings()
    options = gunicorn_options(settings, host, port, workers)
    options["accesslog"] = None
    options["loglevel"] = "warning"
    # ``gunicorn_options`` carries the product's hooks (event streams end on SIGTERM, the
    # collector tuned per worker, per-worker metrics cleaned up): the benchmarks measure them.
    from controlsvc import metrics

    metrics.setup_process(settings)
    BenchApi(settings, options).run()


if __name__ == "__main__":
    main()
