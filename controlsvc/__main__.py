"""`python -m controlsvc` is `jaxmba-service`."""

from controlsvc.ops.manage import main

main()
