"""The two peers, run the way Debian ships them: collectd's virt plugin and the Prometheus libvirt exporter.

Neither runs as a service here: each is started in the foreground with its
own configuration on loopback only, and stopped by its pid at the end.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import time
from typing import List, Optional, Tuple

COLLECTD = "/usr/sbin/collectd"
EXPORTER = "/usr/bin/prometheus-libvirt-exporter"

# ExtraStats selectors that cover what kvm-telegraf reports: state and reason, the CPU
# user/system split, vCPUs, balloon memory, disk flush/time counters and errors,
# disk allocation/capacity/physical. (cpu_time, memory, disk and NIC counters are always on.)
COLLECTD_EXTRA_STATS = "disk disk_err domain_state pcpu memory vcpu disk_allocation disk_capacity disk_physical"


def free_loopback_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def collectd_config(workdir: str, domain_regex: str, sink_port: int, uri: str) -> str:
    """Interval 1 s, the virt plugin on the bench guests only, values sent to a loopback UDP sink."""
    return f"""\
Interval 1
BaseDir "{workdir}"
PIDFile "{workdir}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
ReadThreads 1
WriteThreads 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel "warning"
  File STDERR
</Plugin>
LoadPlugin virt
<Plugin virt>
  Connection "{uri}"
  Domain "/{domain_regex}/"
  ExtraStats "{COLLECTD_EXTRA_STATS}"
</Plugin>
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "{sink_port}"
</Plugin>
"""


class Collectd:
    """collectd in the foreground; what it sends lands on a UDP socket the bench drains."""

    def __init__(self, workdir: str, domain_regex: str, uri: str) -> None:
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setblocking(False)
        self.conf = os.path.join(workdir, "collectd.conf")
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.write(collectd_config(workdir, domain_regex, self.sink.getsockname()[1], uri))
        self.log = os.path.join(workdir, "collectd.log")
        self.proc: Optional[subprocess.Popen] = None
        self.received = 0

    def start(self) -> int:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([COLLECTD, "-f", "-C", self.conf], stdout=log, stderr=log)
        return self.proc.pid

    def drain(self) -> int:
        """Bytes collectd sent since the last drain (the socket would drop them once full)."""
        got = 0
        while True:
            try:
                got += len(self.sink.recv(65536))
            except BlockingIOError:
                self.received += got
                return got

    def wait_first_values(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"collectd exited with {self.proc.returncode}; see {self.log}")
            if self.drain():
                return
            time.sleep(0.1)
        raise RuntimeError(f"collectd sent nothing within {timeout:.0f}s; see {self.log}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.sink.close()


class Exporter:
    """prometheus-libvirt-exporter on a free loopback port; one scrape is one HTTP GET /metrics."""

    def __init__(self, workdir: str, uri: str) -> None:
        self.port = free_loopback_port()
        self.uri = uri
        self.log = os.path.join(workdir, "exporter.log")
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> int:
        argv: List[str] = [
            EXPORTER,
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--libvirt.uri={self.uri}",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        return self.proc.pid

    def scrape(self, timeout: float = 30.0) -> Tuple[float, bytes]:
        """(seconds from request to the last byte of the body, the body)."""
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"exporter answered HTTP {response.status}")
        return elapsed, body

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.proc.returncode}; see {self.log}")
            try:
                self.scrape(timeout=5.0)
                return
            except (OSError, RuntimeError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: Optional[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after *grace*: only the process this bench started."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
