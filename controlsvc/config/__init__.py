"""The service configuration: ``sections`` (one model per INI section) and ``settings``
(``Settings``, profiles, loading from the INI file and the environment)."""
