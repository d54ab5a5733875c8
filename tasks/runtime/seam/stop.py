"""The run is being interrupted: every transport still waiting (a child process, an SSH command
in a fan-out thread) stops at its next poll instead of running to its end."""

from __future__ import annotations

import threading

STOP = threading.Event()


class Interrupted(Exception):
    """Raised in a worker thread whose wait was cut short because the run is stopping."""
