"""Persistence: the SQLAlchemy models (``models/``), the database plumbing (``db``), keyset
pagination, the Alembic glue (``migrate``), and the operations on the records (enclosures,
commands, sessions, users, alerts, the event log, ...): plain functions over a ``Session`` that
flush and never commit; messages go out through the ``domain.publisher.Publisher`` port.
No Flask, no paho."""
