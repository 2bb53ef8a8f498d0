"""The enclosure agent: records segmented video, reports health, obeys commands."""

__version__ = "0.1.0"
