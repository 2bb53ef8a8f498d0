"""Pure rules and state machines of the service: typed, no Flask, no paho, no I/O."""
