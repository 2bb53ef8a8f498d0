#!/usr/bin/env python3
"""The original's entry point: `python manage.py <command>` runs `jaxmba-service <command>`
(run, create_admin, init_config, create_secrets, db, start_workers, test, ...), also from a
checkout where only `pip install -r requirements.txt` was done."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlsvc.ops.manage import main  # noqa: E402 - after the checkout is on the path

if __name__ == "__main__":
    main(sys.argv[1:])
