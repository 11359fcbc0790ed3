"""A free TCP port for a server started as a separate process.

One helper for every place that starts a model server by port (the InfraValidator, the tests, the
benchmarks). It imports only the standard library, so tests and tools can use it without
TensorFlow's start-up cost.
"""
from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on now. Another process may take it before the
    server binds it; callers that start servers retry or fail with the port in their message."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
