"""Operating the service: the `jaxmba-service` CLI (``manage``), process wiring (``runner``),
the app factory (``app``), the demo, the embedded development broker and the config file writer."""
