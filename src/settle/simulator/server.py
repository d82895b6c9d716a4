"""A simulator served by uvicorn in a background thread, on a free loopback port.

For tests and local tools that want a real HTTP simulator without a second process::

    with SimulatorThread(SimulatorConfig(name="sim_a", hang_seconds=1.0)) as sim:
        HttpProcessor("sim_a", sim.base_url)...
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

import uvicorn

from settle.simulator.app import Simulator, create_simulator_app

if TYPE_CHECKING:
    from types import TracebackType

    from settle.simulator.config import SimulatorConfig

__all__ = ["SimulatorThread"]

HOST = "127.0.0.1"


class SimulatorThread:
    """``start()`` binds a free port on 127.0.0.1 and waits until uvicorn serves; ``stop()``
    shuts it down (calls still held are cut after ``graceful_seconds``)."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        graceful_seconds: int = 1,
        startup_timeout: float = 10.0,
    ) -> None:
        self.app = create_simulator_app(config)
        self.simulator: Simulator = self.app.state.simulator
        self._graceful = graceful_seconds
        self._startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the simulator has not been started")
        return f"http://{HOST}:{self.port}"

    def start(self) -> SimulatorThread:
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it a keep-alive client waits ~40 ms per
        # answer (Nagle's algorithm against delayed ACKs), as a socket handed to asyncio has none.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((HOST, 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            timeout_graceful_shutdown=self._graceful,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"simulator-{self.simulator.config.name}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self._graceful + 10)
            if self._thread.is_alive():
                raise RuntimeError("the simulator thread did not stop")
        self._server = self._thread = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
