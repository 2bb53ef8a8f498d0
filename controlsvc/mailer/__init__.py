"""Delivering outgoing mail: SMTP or the log, on a background thread (``delivery``)."""
