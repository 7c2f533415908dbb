"""An app on a real uvicorn server in a thread of the test: a real event loop and real
sockets on a free loopback port, for tests that need what Starlette's test client does
not give (a connection cut midway, a request held open, a client of our own)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from waiting import wait_for


@contextmanager
def served_app(app: FastAPI, name: str = "test-uvicorn") -> Iterator[str]:
    """``app`` served until the block ends: its base URL (``http://127.0.0.1:<port>``)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 30, "the server")
        assert server.started, "the server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
