"""The ``kvm-telegraf`` command: options in, the chosen trigger loop out.

Heavy imports (libvirt, the pipeline) happen only once a run starts, so
``--help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional, Tuple

import click

from kvm_telegraf import __version__
from kvm_telegraf.config import Duration, load_config_file

MEASUREMENT_CHOICES = ("vm_metrics", "vm_features", "vm_devices", "vm_totals")
LOG_LEVELS = ("error", "warn", "info", "debug")
CONFIG_KEYS = (
    "uri",
    "domain",
    "exclude_domain",
    "measurement",
    "features_refresh",
    "timeout",
    "interval",
    "log_level",
)


def _load_config(ctx: click.Context, _param: click.Parameter, path: Optional[str]) -> None:
    if path:
        ctx.default_map = {**(ctx.default_map or {}), **load_config_file(path, CONFIG_KEYS)}


def _build_pipeline(ctx: click.Context, want_config: bool = True):
    """Wire the stages from the parsed options; imports libvirt-facing modules lazily."""
    from kvm_telegraf.collect import Collector, DomainFilter
    from kvm_telegraf.connection import Connection, open_read_only
    from kvm_telegraf.log import setup_logging
    from kvm_telegraf.pipeline import Pipeline
    from kvm_telegraf.trigger import Shutdown
    from kvm_telegraf.write import BatchWriter

    opts = ctx.params
    setup_logging(opts["log_level"])
    opener = (ctx.obj or {}).get("opener", open_read_only)  # tests swap the source here
    measurements = frozenset(opts["measurement"] or MEASUREMENT_CHOICES)
    collector = Collector(
        connection=Connection(opts["uri"], opener),
        domain_filter=DomainFilter(tuple(opts["domain"]), tuple(opts["exclude_domain"])),
        features_refresh_s=opts["features_refresh"],
        timeout_s=opts["timeout"],
        want_config=want_config and "vm_features" in measurements,
    )
    writer = BatchWriter(click.get_binary_stream("stdout"))
    return Pipeline(collector, writer, Shutdown(), measurements)


def _silence_stdout() -> None:
    """After EPIPE, point fd 1 at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class TelegrafGroup(click.Group):
    """Reports usage errors as one ``E!`` line, which Telegraf logs as an error, then exits 2."""

    def main(self, args: Any = None, prog_name: Optional[str] = None, **extra: Any) -> Any:  # type: ignore[override]
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            hint = " (see kvm-telegraf --help)" if isinstance(exc, click.UsageError) else ""
            click.echo(f"E! {' '.join(exc.format_message().split())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=TelegrafGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kvm-telegraf")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="TOML file with the same keys as the long options (underscores).",
)
@click.option(
    "--uri",
    default="qemu:///system",
    envvar="KVM_TELEGRAF_URI",
    show_default=True,
    help="libvirt URI, opened read-only.",
)
@click.option("--once", is_flag=True, help="Print one batch and exit; exit 1 if libvirt cannot be reached.")
@click.option(
    "--interval",
    type=Duration(),
    default=None,
    help='Collect on our own timer (Telegraf signal = "none") instead of on stdin newlines.',
)
@click.option(
    "--timeout",
    type=Duration(),
    default="5s",
    show_default=True,
    help="Deadline for one bulk stats call; keep it below Telegraf's interval.",
)
@click.option("--domain", "domain", multiple=True, metavar="GLOB", help="Only domains matching GLOB (repeatable).")
@click.option("--exclude-domain", multiple=True, metavar="GLOB", help="Skip domains matching GLOB (repeatable).")
@click.option(
    "--measurement",
    type=click.Choice(MEASUREMENT_CHOICES),
    multiple=True,
    help="Emit only these measurements (repeatable; default all four).",
)
@click.option(
    "--features-refresh",
    type=Duration(),
    default="5m",
    show_default=True,
    help="Re-read domain XML and flags this often (also on start and restart of a domain).",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@click.pass_context
def main(ctx: click.Context, once: bool, interval: Optional[float], timeout: float, **_: Any) -> None:
    """Telegraf execd input: one batch of Influx line protocol per newline on stdin.

    Run it from Telegraf's [[inputs.execd]] with signal = "STDIN", or by hand
    with --once.
    """
    if once and interval:
        raise click.UsageError("--once and --interval exclude each other")
    if interval is not None and timeout >= interval:
        raise click.BadParameter(f"must be shorter than --interval ({interval:g}s)", param_hint="--timeout")
    if ctx.invoked_subcommand:
        return
    from kvm_telegraf.connection import LibvirtUnavailableError
    from kvm_telegraf.log import get_logger
    from kvm_telegraf.trigger import StdinTrigger, run_every, run_on_newlines, stdin_is_pipe

    pipeline = _build_pipeline(ctx)
    restore = pipeline.shutdown.install()
    try:
        if once:
            try:
                pipeline.cycle()
            except LibvirtUnavailableError as exc:
                get_logger(__name__).error("%s", exc)
                ctx.exit(1)
            return
        stdin = click.get_binary_stream("stdin")
        if interval is not None:
            run_every(interval, pipeline.survive_cycle, StdinTrigger(stdin) if stdin_is_pipe(stdin) else None)
        else:
            run_on_newlines(StdinTrigger(stdin), pipeline.survive_cycle)
    except BrokenPipeError:
        _silence_stdout()
    finally:
        restore()
        pipeline.collector.connection.close()


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option(
    "--cycles",
    type=click.IntRange(1, 100),
    default=2,
    show_default=True,
    help="Consecutive snapshots to record (two or more pin the derived fields).",
)
@click.option("--every", type=Duration(), default="2s", show_default=True, help="Pause between snapshots.")
@click.pass_context
def record(ctx: click.Context, file: str, cycles: int, every: float) -> None:
    """Save raw bulk-stats snapshots (and domain XML) as JSON: the golden tests' input, and what a bug report needs."""
    from kvm_telegraf.connection import LibvirtUnavailableError
    from kvm_telegraf.snapshot import snapshot_to_json

    pipeline = _build_pipeline(ctx.parent, want_config=True)
    pipeline.collector.want_config = True
    snapshots = []
    try:
        for index in range(cycles):
            if index:
                time.sleep(every)
            snapshots.append(pipeline.collector.collect())
    except LibvirtUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with open(file, "w", encoding="utf-8") as handle:
            handle.write(snapshot_to_json(snapshots) + "\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {file}: {exc.strerror}") from None
    domains: Tuple[int, ...] = tuple(len(s.domains) for s in snapshots)
    click.echo(f"recorded {cycles} snapshot(s) of {domains[0]} domain(s) to {file}", err=True)
