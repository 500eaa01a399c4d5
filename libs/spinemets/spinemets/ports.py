"""Free TCP ports for servers started by tests, benchmarks and the local stack.

A port the kernel hands out for ``bind(("", 0))`` comes from the ephemeral range, the same
range it draws the source ports of outgoing connections from. Between choosing such a port and
the server binding it, any client connection on the machine may take it as its source port, and
the server then fails with "address in use". :func:`free_port` therefore picks ports below the
ephemeral range, where no outgoing connection lands, and never the same port twice in a process.
Processes that choose ports side by side (parallel test workers) each take their own share of
that range: ``SPINEMETS_PORT_SHARE=k/n`` keeps a process to the ports ``p`` with ``p % n == k``.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20000
SHARE_VARIABLE = "SPINEMETS_PORT_SHARE"
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


def _share() -> tuple[int, int]:
    """This process's share ``(k, n)`` of the port range (``SPINEMETS_PORT_SHARE``; all: 0/1)."""
    value = os.environ.get(SHARE_VARIABLE, "0/1")
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise ValueError(f"{SHARE_VARIABLE}={value!r}: expected k/n, e.g. 0/2") from None
    if not 0 <= index < count:
        raise ValueError(f"{SHARE_VARIABLE}={value!r}: k must be in 0..n-1")
    return index, count


def free_port() -> int:
    """A TCP port outside the ephemeral range, in this process's share of it, free on every
    interface now."""
    top = _ephemeral_start()
    low = _LOWEST if top - _LOWEST > 1000 else 1024
    index, count = _share()
    first = low + (index - low) % count
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(first, top, count)
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise OSError(f"no free TCP port found in {low}-{top - 1}")
