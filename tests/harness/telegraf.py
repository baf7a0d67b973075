"""The real Telegraf (``make telegraf``) with a telegraf.conf of the test's and the drop-in in --config-directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
DROPIN = REPO / "telegraf.d" / "kvm-telegraf.conf"
# make test passes the pinned build's path; by hand, scripts/build-telegraf's link to the latest build serves.
TELEGRAF_ENV = "KVM_TELEGRAF_TELEGRAF"
BUILT_TELEGRAF = REPO / ".cache" / "telegraf" / "telegraf"

# The drop-in's one active command line, and its interval and restart_delay settings.
_COMMAND = re.compile(r"^  command = \[.*\]$", re.MULTILINE)
_SETTING = "^  {key} = .*$"

# `2026-12-02T06:48:45Z E! [inputs.execd] message`
_LOG_LINE = re.compile(r"^\S+ ([EWIDT])! (?:\[([^\]]+)\] )?(.*)$")

# Telegraf's own errors around an exit of the process: Go's Cmd.Wait closes the pipes under the stdout and
# stderr readers, and a tick while the process is down finds stdin closed. They say nothing about the plugin.
EXIT_NOISE = (
    "Error in plugin: read |0: file already closed",
    "Error in plugin: error reading stderr: read |0: file already closed",
    "Error in plugin: setting write deadline failed: use of closed file",
)

# Telegraf's own start-up warnings about defaults that will change, silenced so a healthy log has no W! at all.
AGENT = """\
[agent]
  interval = "{interval}"
  round_interval = true
  flush_interval = "1s"
  flush_jitter = "0s"
  collection_jitter = "0s"
  skip_processors_after_aggregators = true
"""


def find_telegraf() -> Optional[Path]:
    """The pinned Telegraf binary, or None when it was not built."""
    path = Path(os.environ.get(TELEGRAF_ENV) or BUILT_TELEGRAF)
    return path if os.access(path, os.X_OK) else None


def dropin(command: Sequence[str], text: Optional[str] = None, **settings: str) -> str:
    """The shipped drop-in with its command replaced, and each ``key=value`` setting replaced (e.g. interval)."""
    text = DROPIN.read_text() if text is None else text
    text, found = _COMMAND.subn(lambda _: f"  command = {json.dumps(list(command))}", text)
    if found != 1:
        raise ValueError(f"{DROPIN} must have exactly one active command line, found {found}")
    for key, value in settings.items():
        text, found = re.subn(
            _SETTING.format(key=key), lambda _, k=key, v=value: f"  {k} = {json.dumps(v)}", text, flags=re.MULTILINE
        )
        if found != 1:
            raise ValueError(f"{DROPIN} must set {key} exactly once, found {found}")
    return text


def influxdb_output(url: str, database: str) -> str:
    return f'[[outputs.influxdb]]\n  urls = ["{url}"]\n  database = "{database}"\n'


@dataclass(frozen=True)
class LogLine:
    """One line of Telegraf's log: level letter, plugin (``inputs.execd``, or "" for the agent) and message."""

    level: str
    plugin: str
    message: str


class Telegraf:
    """One Telegraf process in ``workdir``: its telegraf.conf, its telegraf.d/ with the drop-in, and its log."""

    def __init__(self, binary: Path, workdir: Path, dropin_text: str, config: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.conf = workdir / "telegraf.conf"
        self.confdir = workdir / "telegraf.d"
        self.log_path = workdir / "telegraf.log"
        self.confdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(config)
        (self.confdir / "kvm-telegraf.conf").write_text(dropin_text)
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> Telegraf:
        argv = [
            str(self.binary),
            "--strict-env-handling",
            "--config",
            str(self.conf),
            "--config-directory",
            str(self.confdir),
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        return self

    def log(self) -> List[LogLine]:
        lines = []
        for text in self.log_path.read_text(errors="replace").splitlines():
            match = _LOG_LINE.match(text)
            if match:
                lines.append(LogLine(match[1], match[2] or "", match[3]))
        return lines

    def plugin_log(self, level: str) -> List[str]:
        """Messages Telegraf logged at ``level`` for the execd input, but for its EXIT_NOISE."""
        lines = self.log()
        return [
            x.message for x in lines if x.level == level and x.plugin == "inputs.execd" and x.message not in EXIT_NOISE
        ]

    def children(self) -> List[int]:
        """Pids of Telegraf's child processes: the plugin, while one runs."""
        assert self.proc is not None
        return children_of(self.proc.pid)

    def plugin_pid(self, timeout: float = 10) -> int:
        """The running plugin's pid, waiting for Telegraf to start one."""
        assert wait_until(lambda: len(self.children()) == 1, timeout), f"no plugin process; log:\n{self.log_text()}"
        return self.children()[0]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as a service manager stops it; Telegraf's exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Telegraf:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def children_of(pid: int) -> List[int]:
    pids: List[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            pids += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the task ended meanwhile
            continue
    return sorted(set(pids))


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
