"""paho's ``loop_stop`` without its race (eclipse-paho/paho.mqtt.python#872, open).

``Client.loop_stop`` reads ``client._thread`` three times, while the network thread sets it to
None as it ends (``_thread_main``): when the loop ends on its own between the reads (a
``disconnect()`` just before, as every stop does), ``loop_stop`` raises ``AttributeError:
'NoneType' object has no attribute 'join'``. Here the thread is read once.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as paho

__all__ = ["stop_loop"]


def stop_loop(client: paho.Client, timeout_s: float | None = None) -> bool:
    """Tell the network thread started by ``loop_start`` to end and wait for it (up to
    ``timeout_s``); True when it has ended (or there was none)."""
    thread = client._thread  # noqa: SLF001 - once, see the module doc
    client._thread_terminate = True  # noqa: SLF001 - what loop_stop sets
    if thread is None or thread is threading.current_thread():
        return True
    thread.join(timeout_s)
    return not thread.is_alive()
