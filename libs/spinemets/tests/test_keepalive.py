"""Keep-alive: a call that outlasts several client pings is not cut off by the server."""

from __future__ import annotations

import time

import grpc

from spinemets import grpcutil

#: A scaled-down ping interval (the services use grpcutil.KEEPALIVE_MS, 30 s).
KEEPALIVE_MS = 1000


def _slow_echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
    time.sleep(6 * KEEPALIVE_MS / 1000)
    return request


def test_a_call_longer_than_many_keepalive_pings_completes() -> None:
    """gRPC's default server policy answered the fourth ping of a waiting client with GOAWAY
    "too_many_pings" and failed the call: segmentations over 2 minutes were lost and retried."""
    handler = grpc.method_handlers_generic_handler(
        "test.Slow", {"Echo": grpc.unary_unary_rpc_method_handler(_slow_echo)})
    server = grpcutil.Server("slow", "127.0.0.1:0", keepalive_ms=KEEPALIVE_MS)
    server.add(lambda _servicer, grpc_server: grpc_server.add_generic_rpc_handlers((handler,)),
               None)
    server.start()
    try:
        with grpcutil.channel(f"127.0.0.1:{server.port}", keepalive_ms=KEEPALIVE_MS) as ch:
            started = time.monotonic()
            reply = ch.unary_unary("/test.Slow/Echo")(b"volume", timeout=60)
            assert reply == b"volume"
            assert time.monotonic() - started >= 6 * KEEPALIVE_MS / 1000
    finally:
        server.stop(grace=0)
