"""Build the Go test oracles under tests/go/ offline.

Debian's golang-go plus golang-github-influxdata-line-protocol-dev and
golang-github-influxdata-toml-dev provide everything: GOPATH points at
/usr/share/gocode and modules are off, so no network is needed.  Debian's go
is named by its path: the Go on PATH may be another toolchain (the one that
builds Telegraf, scripts/build-telegraf), for which these packages are not made.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent
GOPATH = "/usr/share/gocode"
DEBIAN_GO = "/usr/lib/go/bin/go"  # golang-go's default toolchain (1.19 on Debian 12)


def build(prog: str, outdir: Path) -> Path:
    """Build tests/go/<prog> into outdir and return the binary's path.

    Raises RuntimeError if go is missing or the build fails.
    """
    src = GO_DIR / prog
    if not (src / "main.go").is_file():
        raise RuntimeError(f"no Go program {prog!r} under {GO_DIR}")
    go = DEBIAN_GO
    if not os.access(go, os.X_OK):
        raise RuntimeError(f"{go} not found (install golang-go)")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / prog
    with tempfile.TemporaryDirectory(prefix="gocache-") as cache:
        env = dict(os.environ)
        env.update(
            GOPATH=GOPATH,
            GO111MODULE="off",
            GOFLAGS="",
            GOPROXY="off",
            GOCACHE=cache,
            GOTOOLCHAIN="local",
        )
        try:
            proc = subprocess.run(
                [go, "build", "-o", str(out), "."],
                cwd=str(src),
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise RuntimeError(f"cannot run {go}: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"go build of {prog} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    return out


if __name__ == "__main__":
    import sys

    dest = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    print(build(sys.argv[1], dest))
