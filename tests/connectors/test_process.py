"""``settle simulate processor`` as a real process on a free port, driven by the connector."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from settle.connectors import build_router, parse_processor_config
from settle.payments.processors import AuthorizeRequest, ProcessorOutcome

from .conftest import free_port

ENTRY = "import sys; from settle.cli import app; sys.exit(app(prog_name='settle'))"
SECRET = "whsec_" + base64.b64encode(b"process notification secret!").decode()
API_KEY = "sk_sim_process"


class Hooks:
    """A loopback receiver of the simulator's notifications."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                hooks.received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    receiver = Hooks()
    yield receiver
    receiver.close()


@contextlib.contextmanager
def simulate_processor(tmp_path: Path, *args: str) -> Iterator[str]:
    """Run the simulator process until the block ends; its base URL."""
    port = free_port()
    log = (tmp_path / "simulator.log").open("wb")
    env = {**os.environ, "SIM_API_KEY": API_KEY}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ENTRY,
            "simulate",
            "processor",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "simulator.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        yield base_url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log.close()


def test_the_connector_drives_a_simulator_process(tmp_path: Path, hooks: Hooks) -> None:
    with simulate_processor(
        tmp_path,
        "--name",
        "sim_p",
        "--latency-ms",
        "1",
        "--hang-seconds",
        "1",
        "--late-seconds",
        "1",
        "--notify-url",
        hooks.url,
        "--notify-secret",
        SECRET,
        "--seed",
        "5",
    ) as base_url:
        router = build_router(
            parse_processor_config(f"sim_p={base_url}"), timeout=0.4, api_keys={"sim_p": API_KEY}
        )
        processor = router.get("sim_p")

        approved = processor.authorize(
            AuthorizeRequest("att_1", 1000, "USD", "4242424242424242", True, "pi_1")
        )
        declined = processor.authorize(
            AuthorizeRequest("att_2", 1000, "USD", "4000000000009995", False, "pi_2")
        )
        late = processor.authorize(
            AuthorizeRequest("att_3", 700, "USD", "4000000000003019", False, "pi_3")
        )
        found = processor.lookup("att_3")
        listed = httpx.get(
            f"{base_url}/v1/authorizations",
            params={"reference": "pi_1"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ).json()
        deadline = time.monotonic() + 5
        while len(hooks.received) < 3:
            assert time.monotonic() < deadline, hooks.received
            time.sleep(0.02)
        router.close()

    assert (approved.outcome, approved.amount) == (ProcessorOutcome.APPROVED, 1000)
    assert [a["id"] for a in listed["data"]] == [approved.reference]
    assert (declined.outcome, declined.decline_code) == ("declined", "insufficient_funds")
    assert late.outcome is ProcessorOutcome.UNKNOWN
    assert found.result is not None
    assert found.result.outcome is ProcessorOutcome.APPROVED
    types = sorted(
        Webhook(SECRET).verify(body, headers)["type"] for headers, body in hooks.received
    )
    assert types == ["authorization.authorized", "authorization.captured", "authorization.declined"]
