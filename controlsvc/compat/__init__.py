"""Compatibility layers for the systems a lab moves from (each off unless configured)."""
