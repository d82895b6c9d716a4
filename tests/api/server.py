"""``settle serve`` as a real OS process on 127.0.0.1, and the ``settle`` CLI as a subprocess.

Not a test module: the real-server and crash tests use it. The ``settle`` entry point is a
Typer app (``settle.cli:app``, see ``[project.scripts]``); ``settle.cli`` has no ``__main__``
block, so ``python -m settle.cli`` would do nothing. The interpreter running the tests (its
venv) runs ``from settle.cli import app; app()`` instead, which is exactly what the installed
``settle`` script does.

A server's stdout and stderr go to files in its log directory, and every failure message
carries their tails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "CliResult",
    "CliTenant",
    "ServerProcess",
    "create_tenant_via_cli",
    "free_port",
    "run_cli",
    "settle_command",
]

HOST = "127.0.0.1"
_ENTRY = "import sys; from settle.cli import app; sys.exit(app(prog_name='settle'))"


def settle_command(*args: str) -> list[str]:
    """The argv of ``settle ARGS...`` run by this interpreter (the venv under test)."""
    return [sys.executable, "-c", _ENTRY, *args]


def free_port() -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["SETTLE_DATABASE_URL"] = database_url
    env.update(extra or {})
    return env


class CliResult:
    def __init__(self, args: list[str], completed: subprocess.CompletedProcess[str]) -> None:
        self.args = args
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return (
            f"settle {' '.join(self.args)} -> exit {self.returncode}\n"
            f"stdout: {self.stdout}\nstderr: {self.stderr}"
        )


def run_cli(*args: str, database_url: str, timeout: float = 60) -> CliResult:
    """Run ``settle ARGS... --database-url URL`` to completion and capture its output."""
    argv = [*args, "--database-url", database_url]
    completed = subprocess.run(
        settle_command(*argv),
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(argv, completed)


@dataclass(frozen=True)
class CliTenant:
    """What ``settle tenants create NAME --json`` printed."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def create_tenant_via_cli(database_url: str, name: str) -> CliTenant:
    """A tenant and its admin key, made by the ``settle`` CLI in its own process."""
    result = run_cli("tenants", "create", name, "--json", database_url=database_url)
    if result.returncode != 0:
        raise RuntimeError(f"tenants create failed: {result!r}")
    body = result.json()
    if set(body) != {"tenant_id", "key_id", "api_key"}:
        raise RuntimeError(f"tenants create printed unexpected fields: {result!r}")
    return CliTenant(uuid.UUID(body["tenant_id"]), uuid.UUID(body["key_id"]), body["api_key"])


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text if len(text) <= limit else "…" + text[-limit:]


class ServerProcess:
    """One ``settle serve`` process at a time on ``database_url``; restartable.

    ``start()`` waits for ``GET /healthz`` to answer 200. ``stop()`` sends SIGTERM (uvicorn's
    graceful shutdown: it stops accepting, finishes the requests in flight, runs the app's
    shutdown, then re-raises the signal, so the exit status is ``-SIGTERM``; with
    ``workers > 1`` the supervisor stops its workers and exits 0). ``kill()`` sends
    SIGKILL to the whole process group (workers included). ``close()`` stops whatever still
    runs and is safe to call any number of times (fixture teardown).
    """

    def __init__(
        self,
        database_url: str,
        *,
        workers: int = 1,
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.database_url = database_url
        self.workers = workers
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="settle-serve-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.stdout_path = self.log_dir / "serve-0.stdout"
        self.stderr_path = self.log_dir / "serve-0.stderr"

    # ---- addresses and logs ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        """The current run's stdout and stderr (tails), for failure messages."""
        return (
            f"--- settle serve (run {self.runs}, port {self.port}) stderr ---\n"
            f"{_tail(self.stderr_path)}\n"
            f"--- stdout ---\n{_tail(self.stdout_path)}"
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, *, port: int | None = None) -> ServerProcess:
        """Start the server (on ``port``, else a free one) and wait until it is healthy.

        A port taken between choosing and binding it makes the process exit at once; then a
        new free port is tried (a given ``port`` is tried first, then free ones).
        """
        if self.running:
            raise RuntimeError("the server is already running")
        last_error = ""
        for attempt in range(4):
            chosen = port if (port is not None and attempt == 0) else free_port()
            self._spawn(chosen)
            outcome = self._wait_healthy()
            if outcome == "healthy":
                return self
            last_error = self.output()
            self._reap()
            if "address already in use" not in last_error.lower():
                break
        raise RuntimeError(f"settle serve did not become healthy:\n{last_error}")

    def restart(self) -> ServerProcess:
        """Start again on the same port if it can be had (a free one otherwise)."""
        if self.running:
            raise RuntimeError("stop or kill the server before restarting it")
        return self.start(port=self.port)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; the exit status. SIGKILL (and an error) if it does not exit."""
        proc = self._require()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                proc.wait(timeout=10)
                raise RuntimeError(
                    f"settle serve ignored SIGTERM for {timeout} s:\n{self.output()}"
                ) from None
        if self.workers > 1:
            self._kill_group()  # a worker left behind by a broken supervisor
        return int(proc.returncode)

    def kill(self) -> int:
        """kill -9 the server (its whole process group); the exit status."""
        proc = self._require()
        self._kill_group()
        proc.wait(timeout=10)
        return int(proc.returncode)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError):
                self.stop(timeout=15)
        if self.workers > 1:
            self._kill_group()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------------

    def _spawn(self, port: int) -> None:
        self.runs += 1
        self.port = port
        self.stdout_path = self.log_dir / f"serve-{self.runs}.stdout"
        self.stderr_path = self.log_dir / f"serve-{self.runs}.stderr"
        args = settle_command(
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(self.workers),
            "--database-url",
            self.database_url,
        )
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                args,
                env=_env(self.database_url, self.extra_env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: kill() reaches its workers
            )

    def _wait_healthy(self) -> str:
        proc = self._require()
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/healthz"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return "exited"
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(url, timeout=2.0)
                if response.status_code == 200 and response.json() == {"status": "ok"}:
                    return "healthy"
            time.sleep(0.05)
        return "timeout"

    def _reap(self) -> None:
        if self.proc is not None:
            self._kill_group()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def _kill_group(self) -> None:
        """SIGKILL the server's process group (its session: the server and its workers)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _require(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("the server has not been started")
        return self.proc
