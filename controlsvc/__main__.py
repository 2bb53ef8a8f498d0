"""`python -m controlsvc` is `jaxmba-service`."""

from controlsvc.manage import main

main()
