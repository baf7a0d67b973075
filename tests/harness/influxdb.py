"""A throwaway InfluxDB 1.x server (Debian's ``influxd`` 1.6) for tests.

The server listens on loopback only, keeps all its files in a temporary
directory and is removed by stop().  Only the HTTP API is used, with urllib.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

INFLUXD = "/usr/bin/influxd"


def find_influxd() -> str | None:
    """Path of the influxd binary, or None (CI installs Debian's package ``influxdb``)."""
    return shutil.which("influxd") or (INFLUXD if os.access(INFLUXD, os.X_OK) else None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (database, measurement, tag key)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_CONFIG = """\
# Written by tests/harness/influxdb.py.  Everything but HTTP is switched off.
reporting-disabled = true
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
  max-row-limit = 0

[ifql]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = false
"""


class InfluxError(RuntimeError):
    pass


class InfluxServer:
    """Start ``influxd`` on free loopback ports in a temporary directory.

    ``write`` returns the raw (status, body) so tests can assert on rejections;
    ``query`` raises InfluxError on an HTTP error or a statement error.
    """

    def __init__(self, influxd: str | None = None, start_timeout: float = 30.0) -> None:
        self.influxd = influxd or find_influxd() or INFLUXD
        self.start_timeout = start_timeout
        self.root: str | None = None
        self.port = 0
        self.rpc_port = 0
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        assert self.root is not None
        return os.path.join(self.root, "influxd.log")

    def start(self) -> InfluxServer:
        self.root = tempfile.mkdtemp(prefix="influxd-test-")
        self.port = free_port()
        self.rpc_port = free_port()
        while self.rpc_port == self.port:
            self.rpc_port = free_port()
        conf = os.path.join(self.root, "influxdb.conf")
        with open(conf, "w") as f:
            f.write(_CONFIG.format(root=self.root, http_port=self.port, rpc_port=self.rpc_port))
        # influxd applies INFLUXDB_* variables over the config file: drop them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [self.influxd, "run", "-config", conf],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                log = self.read_log()
                self.stop()
                raise InfluxError(f"influxd exited with {self.proc.returncode}:\n{log}")
            if self.ping():
                return self
            if time.monotonic() > deadline:
                log = self.read_log()
                self.stop()
                raise InfluxError(f"influxd did not answer /ping in {self.start_timeout}s:\n{log}")
            time.sleep(0.1)

    def read_log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, params: dict[str, str], body: bytes | None = None) -> tuple[int, bytes]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", "text/plain; charset=utf-8")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def ping(self) -> bool:
        try:
            status, _ = self._request("GET", "/ping", {})
        except OSError:
            return False
        return status == 204

    def write(self, db: str, lines: str, precision: str = "ns") -> tuple[int, str]:
        """POST line protocol to /write; returns (HTTP status, response body)."""
        status, body = self._request("POST", "/write", {"db": db, "precision": precision}, lines.encode("utf-8"))
        return status, body.decode("utf-8", errors="replace")

    def query_raw(self, influxql: str, db: str | None = None, method: str = "GET") -> dict[str, Any]:
        params = {"q": influxql, "epoch": "ns"}
        if db:
            params["db"] = db
        status, body = self._request(method, "/query", params, b"" if method == "POST" else None)
        try:
            doc = json.loads(body or b"{}")
        except ValueError as err:
            raise InfluxError(f"HTTP {status}: {body!r}") from err
        if status != 200 or "error" in doc:
            raise InfluxError(f"HTTP {status}: {doc.get('error', body)!r}")
        return doc

    def query(self, db: str | None, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL; return the ``results`` list.  Raises InfluxError on a
        statement error."""
        method = "GET" if influxql.lstrip().upper().startswith(("SELECT", "SHOW")) else "POST"
        results = self.query_raw(influxql, db, method)["results"]
        for res in results:
            if "error" in res:
                raise InfluxError(res["error"])
        return results

    def rows(self, db: str, influxql: str) -> list[dict[str, Any]]:
        """Flatten a query's series into dicts (time, tags and columns)."""
        out: list[dict[str, Any]] = []
        for res in self.query(db, influxql):
            for series in res.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    row = dict(tags)
                    row.update(zip(series["columns"], values))
                    out.append(row)
        return out

    def create_database(self, name: str) -> None:
        self.query(None, f"CREATE DATABASE {quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.query(None, f"DROP DATABASE {quote_ident(name)}")

    def count(self, db: str, measurement: str) -> int:
        """Number of points stored in ``measurement`` (one row per series and time)."""
        return len(self.rows(db, f"SELECT * FROM {quote_ident(measurement)}"))

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> InfluxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
