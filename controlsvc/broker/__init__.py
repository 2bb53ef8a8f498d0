"""The Mosquitto broker as jaxmba configures it: accounts, ACL, config, and a local broker process.

No MQTT client code here (that lives in ``controlsvc/bridge/``); this package writes the broker's
files and runs ``mosquitto``:

- ``passwords``: ``hash_password`` (mosquitto 2.0 ``$7$`` PBKDF2-SHA512 hashes), password file
  edits (``write_password_file``, ``add_or_update_account``, ``remove_account``), atomic and locked.
- ``acl``: ``render_acl`` - per-enclosure ``pattern`` rules on ``%u``, the service and operator
  accounts; ``deploy/mosquitto/acl`` is its output for the default prefix.
- ``config``: ``BrokerConfig`` and ``render_config`` for a generated loopback broker.
- ``process``: ``MosquittoProcess`` (start and wait until listening, reload, stop),
  ``mosquitto_binary``, ``find_free_port``, ``probe``.
- ``local``: ``LocalBroker`` - directory + files + process, for tests, the demo and ``run``.
- ``errors``: the exception tree.
"""

from __future__ import annotations

from controlsvc.broker.acl import (
    DEFAULT_PREFIX,
    OPERATOR_USER,
    SERVICE_USER,
    render_acl,
    validate_prefix,
)
from controlsvc.broker.errors import (
    BrokerAlreadyRunning,
    BrokerError,
    BrokerStartError,
    InvalidBrokerSetting,
    MosquittoNotInstalled,
    PasswordFileError,
    PortInUseError,
)
from controlsvc.broker.local import LocalBroker
from controlsvc.broker.mosquitto_config import BrokerConfig, render_config
from controlsvc.broker.password_file import (
    add_or_update_account,
    generate_password,
    hash_password,
    read_password_file,
    remove_account,
    validate_username,
    verify_password,
    write_password_file,
)
from controlsvc.broker.process import MosquittoProcess, find_free_port, mosquitto_binary, probe

__all__ = [
    "DEFAULT_PREFIX",
    "OPERATOR_USER",
    "SERVICE_USER",
    "BrokerAlreadyRunning",
    "BrokerConfig",
    "BrokerError",
    "BrokerStartError",
    "InvalidBrokerSetting",
    "LocalBroker",
    "MosquittoNotInstalled",
    "MosquittoProcess",
    "PasswordFileError",
    "PortInUseError",
    "add_or_update_account",
    "find_free_port",
    "generate_password",
    "hash_password",
    "mosquitto_binary",
    "probe",
    "read_password_file",
    "remove_account",
    "render_acl",
    "render_config",
    "validate_prefix",
    "validate_username",
    "verify_password",
    "write_password_file",
]
