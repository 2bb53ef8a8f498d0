"""``jaxmba-ctl``: the command line for people at a terminal and for scripts (docs/ctl.md).

- ``cli``: the click commands and ``main`` (one line on stderr per error, never a traceback).
- ``client``: the REST client (httpx) that refreshes its access token itself.
- ``tokens``: the per-URL credential store (``$XDG_CONFIG_HOME/jaxmba/credentials.json``).
- ``sse``: reading ``GET /api/events`` (Server-Sent Events), resuming with ``Last-Event-ID``.
- ``output``: rich tables, progress and JSON output.
- ``sessions``: the ``sessions`` commands, with live progress bars.
- ``mqtt``: ``mqtt sub|pub`` straight over MQTT (the only module here that imports paho).
- ``provision``: an enclosure's broker account and a ready agent config file.
- ``errors``: the exception tree.
"""
