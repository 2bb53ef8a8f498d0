"""Helpers for the test suite: real brokers and databases, MQTT clients, waiting on conditions."""
