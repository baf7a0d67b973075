"""The ``kvm-telegraf`` command: options in, the chosen trigger loop out.

Heavy imports (libvirt, the pipeline) happen only once a run starts, so
``--help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Tuple

import click

from kvm_telegraf import __version__
from kvm_telegraf.config import (
    DURATION,
    FLAG,
    SOME_STRINGS,
    STRING,
    STRING_TABLE,
    STRINGS,
    Duration,
    MetadataTagSpec,
    load_config_file,
)
from kvm_telegraf.groups import ALL, GROUP_NAMES

MEASUREMENT_CHOICES = ("vm_metrics", "vm_features", "vm_devices", "vm_totals")
LOG_LEVELS = ("error", "warn", "info", "debug")
FORMATS = ("influx", "table")
DOCTOR_INTERVAL_S = 10.0  # Telegraf's default interval
# What each --config key may hold (see config.py); a list stands for the option given several times.
CONFIG_SCHEMA = {
    "uri": SOME_STRINGS,
    "domain": STRINGS,
    "exclude_domain": STRINGS,
    "measurement": SOME_STRINGS,
    "features_refresh": DURATION,
    "timeout": DURATION,
    "interval": DURATION,
    "log_level": STRING,
    "nova": FLAG,
    "metadata_tag": STRING_TABLE,
    "hypervisor_tag": FLAG,
    "collect": STRINGS,
    "read_write": FLAG,
    "guest_refresh": DURATION,
}
# Bounds of each duration: finite and sane, so no timer in libvirt or Python overflows.
INTERVAL = Duration(0.1, 86400.0)
TIMEOUT = Duration(0.01, 3600.0)
FEATURES_REFRESH = Duration(1.0, 7 * 86400.0)
GUEST_REFRESH = Duration(1.0, 86400.0)
SAMPLE = Duration(0.01, 3600.0)


def _load_config(ctx: click.Context, _param: click.Parameter, path: Optional[str]) -> None:
    if path:
        ctx.default_map = {**(ctx.default_map or {}), **load_config_file(path, CONFIG_SCHEMA)}


def _unique_uris(_ctx: click.Context, param: click.Parameter, uris: Tuple[str, ...]) -> Tuple[str, ...]:
    from kvm_telegraf.connection import redact_uri

    seen = set()
    for uri in uris:
        if uri in seen:
            raise click.BadParameter(f"{redact_uri(uri)} is given twice", param=param)
        seen.add(uri)
    return uris


def _opener(ctx: click.Context) -> Any:
    """How connections are opened: libvirt's read-only open (read-write with --read-write), or what a test
    passed in ``obj``."""
    from kvm_telegraf.connection import open_read_only, open_read_write

    default = open_read_write if ctx.params.get("read_write") else open_read_only
    return (ctx.obj or {}).get("opener", default)


def _start(ctx: click.Context) -> None:
    from kvm_telegraf.log import setup_logging

    setup_logging(ctx.params["log_level"])


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
    multiple=True,
    default=("qemu:///system",),
    envvar="KVM_TELEGRAF_URI",
    show_default=True,
    callback=_unique_uris,
    help="libvirt URI, opened read-only (see --read-write). Repeat it to read several hypervisors; each point "
    "then carries a hypervisor tag.",
)
@click.option(
    "--read-write",
    is_flag=True,
    help="Open libvirt read-write, as --collect guest needs: this grants full management of every domain "
    "unless libvirt's polkit access driver narrows it (README: Security).",
)
@click.option("--once", is_flag=True, help="Print one batch and exit; exit 1 if libvirt cannot be reached.")
@click.option(
    "--interval",
    type=INTERVAL,
    default=None,
    help=f'Collect on our own timer (Telegraf signal = "none") instead of on stdin newlines ({INTERVAL.bounds}).',
)
@click.option(
    "--timeout",
    type=TIMEOUT,
    default="5s",
    show_default=True,
    help=f"Deadline for one bulk stats call; keep it below Telegraf's interval ({TIMEOUT.bounds}).",
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
    "--collect",
    type=click.Choice((*GROUP_NAMES, ALL)),
    multiple=True,
    metavar="GROUP",
    help="Also collect this statistics group (repeatable; all: every one but guest, which needs --read-write): "
    f"{', '.join(GROUP_NAMES)}. "
    "See the README's Groups table for what each adds and costs.",
)
@click.option(
    "--features-refresh",
    type=FEATURES_REFRESH,
    default="5m",
    show_default=True,
    help=f"Re-read domain XML and flags this often (also on start and restart of a domain; {FEATURES_REFRESH.bounds}).",
)
@click.option(
    "--guest-refresh",
    type=GUEST_REFRESH,
    default="60s",
    show_default=True,
    help=f"With --collect guest: ask each guest agent this often, at most once per cycle ({GUEST_REFRESH.bounds}).",
)
@click.option(
    "--hypervisor-tag",
    is_flag=True,
    help="Tag points with libvirt's hostname even with one --uri (a remote host read from elsewhere).",
)
@click.option("--nova", is_flag=True, help="Tag points with OpenStack Nova's nova_name, nova_project, nova_flavor.")
@click.option(
    "--metadata-tag",
    type=MetadataTagSpec(),
    multiple=True,
    help="Tag points with what XPATH (below <domain>, ending in /@attr for an attribute) finds (repeatable).",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="influx",
    show_default=True,
    help="table: one row per VM for a person, like virt-top (needs --once).",
)
@click.option(
    "--sample",
    type=SAMPLE,
    default=None,
    help=f"With --format table: take two readings this far apart and show CPU % and net/disk rates ({SAMPLE.bounds}).",
)
@click.pass_context
def main(
    ctx: click.Context,
    once: bool,
    interval: Optional[float],
    timeout: float,
    output_format: str,
    sample: Optional[float],
    **_: Any,
) -> None:
    """Telegraf execd input: one batch of Influx line protocol per newline on stdin.

    Run it from Telegraf's [[inputs.execd]] with signal = "STDIN", or by hand
    with --once.
    """
    if once and interval:
        raise click.UsageError("--once and --interval exclude each other")
    if interval is not None and timeout >= interval:
        raise click.BadParameter(f"must be shorter than --interval ({interval:g}s)", param_hint="--timeout")
    if output_format == "table" and not once:
        raise click.UsageError("--format table needs --once (it is for a person, not for Telegraf)")
    if sample is not None and output_format != "table":
        raise click.UsageError("--sample needs --format table")
    if "guest" in (ctx.params.get("collect") or ()) and not ctx.params.get("read_write"):
        raise click.UsageError(
            "--collect guest needs --read-write: libvirt answers guest agent calls only on a read-write "
            "connection (the README's Security section says what that grants)"
        )
    if ctx.invoked_subcommand:
        return
    if output_format == "table":
        _print_table(ctx, sample)
        return
    from kvm_telegraf.app import build_pipeline
    from kvm_telegraf.connection import LibvirtUnavailableError
    from kvm_telegraf.log import get_logger
    from kvm_telegraf.trigger import StdinTrigger, run_every, run_on_newlines, stdin_is_pipe

    _start(ctx)
    pipeline = build_pipeline(ctx.params, click.get_binary_stream("stdout"), _opener(ctx), events=not once)
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
        pipeline.source.close()


def _print_table(ctx: click.Context, sample: Optional[float]) -> None:
    """--once --format table: one reading, or two *sample* seconds apart for rates; exit 1 without libvirt."""
    from kvm_telegraf.app import build_source
    from kvm_telegraf.connection import LibvirtUnavailableError
    from kvm_telegraf.log import get_logger
    from kvm_telegraf.table import read_samples, table_from_snapshots

    _start(ctx)
    source = build_source(ctx.params, want_config=False, opener=_opener(ctx))
    try:
        snapshots = read_samples(source, sample)
    except LibvirtUnavailableError as exc:
        get_logger(__name__).error("%s", exc)
        ctx.exit(1)
    finally:
        source.close()
    click.echo(table_from_snapshots(snapshots), nl=False)


@main.command()
@click.option(
    "--interval",
    "telegraf_interval",
    type=INTERVAL,
    default=None,
    help="Telegraf's interval to compare one collection with  [default: an --interval before doctor, else 10s]",
)
@click.pass_context
def doctor(ctx: click.Context, telegraf_interval: Optional[float]) -> None:
    """Check this host for kvm-telegraf, one line per finding; exit 1 if it cannot deliver metrics.

    Put it after the options of your drop-in's command, and run it as Telegraf's user:

    \b
    runuser -u telegraf -- kvm-telegraf --timeout 5s doctor --interval 10s
    """
    import pwd

    from kvm_telegraf.doctor import FAIL, diagnose
    from kvm_telegraf.hosts import HostSet

    interval = telegraf_interval or ctx.parent.params["interval"] or DOCTOR_INTERVAL_S
    from kvm_telegraf.app import build_source

    _start(ctx.parent)
    source = build_source(ctx.parent.params, want_config=True, opener=_opener(ctx.parent))  # balloon checks read XML
    collectors = [host.collector for host in source.hosts] if isinstance(source, HostSet) else [source]
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = f"uid {os.geteuid()}"
    failed = False
    try:
        for collector in collectors:  # one host after the other, each from its "connected" line on
            for finding in diagnose(collector, interval, user, read_write=ctx.parent.params["read_write"]):
                click.echo(str(finding))
                failed = failed or finding.level == FAIL
    finally:
        source.close()
    ctx.exit(1 if failed else 0)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option(
    "--cycles",
    type=click.IntRange(1, 100),
    default=2,
    show_default=True,
    help="Consecutive snapshots to record (two or more pin the derived fields).",
)
@click.option(
    "--every", type=SAMPLE, default="2s", show_default=True, help=f"Pause between snapshots ({SAMPLE.bounds})."
)
@click.pass_context
def record(ctx: click.Context, file: str, cycles: int, every: float) -> None:
    """Save raw bulk-stats snapshots (and domain XML) as JSON: the golden tests' input, and what a bug report needs."""
    from kvm_telegraf.app import build_source, groups_of
    from kvm_telegraf.connection import LibvirtUnavailableError
    from kvm_telegraf.snapshot import record_cycles, snapshot_to_json

    _start(ctx.parent)
    events = "events" in groups_of(ctx.parent.params)  # --collect events records them too
    source = build_source(ctx.parent.params, want_config=True, opener=_opener(ctx.parent), events=events)
    try:
        snapshots = record_cycles(source, cycles, every)
    except LibvirtUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        source.close()
    try:
        with open(file, "w", encoding="utf-8") as handle:
            handle.write(snapshot_to_json(snapshots) + "\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {file}: {exc.strerror}") from None
    domains: Tuple[int, ...] = tuple(len(s.domains) for s in snapshots)
    click.echo(f"recorded {cycles} snapshot(s) of {domains[0]} domain(s) to {file}", err=True)
