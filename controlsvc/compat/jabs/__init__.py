"""The JABS compatibility layer: the original UI's REST calls, the original device client's
heartbeats and the import of a JABS database, over this service's own domain.

- ``ids``: the stable integer ids of enclosures and sessions (tables in
  ``controlsvc.store.models.jabs``, with the registered legacy devices);
- ``shapes``: the original's JSON shapes, built from our rows;
- ``heartbeat``: the original server's decision order, as a pure function;
- ``gateway``: a heartbeat turned into the same telemetry and events as an MQTT agent's;
- ``api``: the Flask blueprint (``[JABS] enabled``);
- ``legacy``: registering legacy devices (CLI).
"""
