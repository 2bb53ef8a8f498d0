"""A fleet of simulated enclosures for tests, benchmarks and the demo.

Thousands of enclosures in one process, each with its own MQTT connection, client id, broker
account and Will, publishing ``state``/``status`` and answering ``cmd``/``desired`` as the
contract's agent does, driven by a few selector threads instead of a thread per connection.

* ``Fleet``: start, stop, ``kill(eid)`` (the Will fires), ``revive(eid)``, counters.
* ``fleet_accounts`` / ``install_accounts`` / ``add_to_password_file``: their broker accounts.
* ``python -m fleet_simulator --help``: the same from a shell.
"""

from __future__ import annotations

from fleet_simulator.accounts import (
    DEFAULT_ID_PREFIX,
    add_to_password_file,
    fleet_accounts,
    fleet_ids,
    install_accounts,
    read_accounts_file,
    write_accounts_file,
)
from fleet_simulator.agent import AgentOptions, Outbound, OutKind, Reaction, SimulatedAgent
from fleet_simulator.counters import FleetCounters
from fleet_simulator.enclosure import LinkState
from fleet_simulator.errors import (
    AccountsError,
    FleetNotReady,
    SimulatorError,
    UnknownEnclosure,
)
from fleet_simulator.fleet import AGENT_VERSION, EnclosureView, Fleet, parse_broker_url

__all__ = [
    "AGENT_VERSION",
    "DEFAULT_ID_PREFIX",
    "AccountsError",
    "AgentOptions",
    "EnclosureView",
    "Fleet",
    "FleetCounters",
    "FleetNotReady",
    "LinkState",
    "OutKind",
    "Outbound",
    "Reaction",
    "SimulatedAgent",
    "SimulatorError",
    "UnknownEnclosure",
    "add_to_password_file",
    "fleet_accounts",
    "fleet_ids",
    "install_accounts",
    "parse_broker_url",
    "read_accounts_file",
    "write_accounts_file",
]
