"""Free TCP ports for servers started by tests, benchmarks and the local stack.

A port the kernel hands out for ``bind(("", 0))`` comes from the ephemeral range, the same
range it draws the source ports of outgoing connections from. Between choosing such a port and
the server binding it, any client connection on the machine may take it as its source port, and
the server then fails with "address in use". :func:`free_port` therefore picks ports below the
ephemeral range, where no outgoing connection lands, and never the same port twice in a process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20000
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port outside the ephemeral range, free on every interface now."""
    top = _ephemeral_start()
    low = _LOWEST if top - _LOWEST > 1000 else 1024
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, top)
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise OSError(f"no free TCP port found in {low}-{top - 1}")
