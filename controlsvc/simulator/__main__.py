"""``python -m controlsvc.simulator``: see ``controlsvc.simulator.cli``."""

from controlsvc.simulator.cli import main

main(prog_name="python -m controlsvc.simulator")
