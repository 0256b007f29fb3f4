"""Serving a stand-in legacy app (FastAPI) in the foreground or on a background thread, for tests and the demo."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

__all__ = ["BackgroundServer", "free_port", "serve_background", "serve_foreground", "wait_for_port"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], *, what: str, timeout: float = 20.0) -> None:
    """Wait until a stand-in started as its own process accepts connections on `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} terminó al arrancar (código {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} no abrió el puerto {port}")


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          timeout_graceful_shutdown=2)


def serve_foreground(app: FastAPI, port: int, *, host: str = "127.0.0.1") -> None:
    """Run until interrupted (Ctrl+C)."""
    uvicorn.Server(_config(app, host, port)).run()


@dataclass(frozen=True, slots=True)
class BackgroundServer:
    """A running stand-in: its base `url`, and `stop()` to shut it down."""

    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve_background(app: FastAPI, *, name: str, host: str = "127.0.0.1", port: int = 0,
                     startup_timeout: float = 10.0) -> BackgroundServer:
    """Serve in a daemon thread (port 0: a free port) and return once it accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, bound))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"{name}-{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"El servicio simulado {name} no arrancó en el puerto {bound}.")
        time.sleep(0.01)
    return BackgroundServer(url=f"http://{host}:{bound}", port=bound, server=server, thread=thread)
