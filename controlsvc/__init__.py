"""JAX Mouse Behavior Analysis control service: REST API, MQTT bridge and management CLI."""

__version__ = "0.1.0"
