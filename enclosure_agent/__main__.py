"""``python -m enclosure_agent``: the same as ``jaxmba-agent``."""

from enclosure_agent.cli import main

main()
