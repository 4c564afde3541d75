"""Run the model server as a child process on loopback: infra-validation, tests and the benchmark.

The server is started exactly as the serving image starts it (``python -m
tollgate.serving``), so what passes here is what runs in the cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tollgate.errors import TollgateError

LOOPBACK = "127.0.0.1"


# The server's one-line refusal of a port another process took (tollgate.serving.server.bind_port).
_PORT_TAKEN = "is in use; choose another with"
# Fresh ports tried when the ones picked were taken before the child bound them.
PORT_ATTEMPTS = 3


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that is free right now (another process may take it before the
    server binds it: :class:`ServerProcess` then starts again on fresh ports)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerNotReady(TollgateError):
    """The server exited or did not answer in time; the message carries its last log lines."""


class ServerProcess:
    """``python -m tollgate.serving`` in a child process, on free loopback ports.

    Use as a context manager: ``with ServerProcess(dir, "m") as server: server.rest_url``.
    """

    def __init__(self, model_dir: str | Path, model_name: str, *, max_batch: int | None = None,
                 unknown_columns: str | None = None, log_path: str | Path | None = None,
                 env: dict[str, str] | None = None, extra_args: list[str] | None = None):
        self.model_dir = str(model_dir)
        self.model_name = model_name
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="tollgate-server-", suffix=".log")[1])
        self._options = (["--max-batch", str(max_batch)] if max_batch is not None else []) + \
            (["--unknown-columns", unknown_columns] if unknown_columns is not None else []) + list(extra_args or [])
        self._pick_ports()
        self._port_attempts = 1
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    def _pick_ports(self) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.command = [sys.executable, "-m", "tollgate.serving", "--model-dir", self.model_dir,
                        "--model-name", self.model_name, "--host", LOOPBACK, "--http-port", str(self.http_port),
                        "--grpc-port", str(self.grpc_port), *self._options]

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def start(self) -> ServerProcess:
        """Launch the child; returns at once (see :meth:`wait_ready`)."""
        self._log = open(self.log_path, "wb")
        self._started = time.monotonic()
        self._launch()
        return self

    def _launch(self) -> None:
        self._log.flush()
        self._attempt_offset = self._log.tell()  # where this attempt's output starts in the log
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self._env,
                                        start_new_session=True)

    def _lost_port_race(self) -> bool:
        """The child exited because a port picked for it was taken meanwhile: start it again on fresh
        ports (at most ``PORT_ATTEMPTS`` in all); False when that is not why, or attempts are spent."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._attempt_offset)
                this_attempt = log.read().decode(errors="replace")
        except OSError:
            return False
        if self._port_attempts >= PORT_ATTEMPTS or _PORT_TAKEN not in this_attempt:
            return False
        self._port_attempts += 1
        self._pick_ports()
        self._log.write(f"[tollgate] a port was taken before the server bound it; starting again on "
                        f"{self.http_port}/{self.grpc_port}\n".encode())
        self._log.flush()
        self._launch()
        return True

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the server wrote (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Block until REST reports the model ready and gRPC answers; returns the seconds it took."""
        import httpx

        if self.process is None:
            raise ServerNotReady("the model server was never started")
        deadline = self._started + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self.process.poll()
                if code is not None and not self._lost_port_race():
                    raise ServerNotReady(f"model server exited with code {code} during startup:\n{self.log_tail()}")
                ready_url = f"{self.rest_url}/v2/models/{self.model_name}/ready"  # the ports may be new
                try:
                    if client.get(ready_url).status_code == 200 and self._grpc_ready():
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerNotReady(f"model server not ready after {timeout:g} s:\n{self.log_tail()}")
                time.sleep(0.1)
        self.startup_seconds = time.monotonic() - self._started
        return self.startup_seconds

    def _grpc_ready(self) -> bool:
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

        with grpc.insecure_channel(self.grpc_url) as channel:
            try:
                stub = GRPCInferenceServiceStub(channel)
                return stub.ModelReady(pb.ModelReadyRequest(name=self.model_name), timeout=2.0).ready
            except grpc.RpcError:
                return False

    def alive(self) -> bool:
        """True while the child process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
