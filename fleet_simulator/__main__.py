"""``python -m fleet_simulator``: see ``fleet_simulator.cli``."""

from fleet_simulator.cli import main

main(prog_name="python -m fleet_simulator")
