"""The MQTT bridge: the only subscriber that writes telemetry (see ``service`` and
``docs/bridge.md``). ``Bridge`` runs one in-process; ``service.run(settings)`` is the
``jaxmba-service bridge`` entry point."""

from __future__ import annotations

from controlsvc.bridge.errors import BridgeError, BrokerRefused
from controlsvc.bridge.service import Bridge, run
from controlsvc.bridge.stats import BridgeStats

__all__ = ["Bridge", "BridgeError", "BridgeStats", "BrokerRefused", "run"]
