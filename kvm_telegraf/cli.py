"""The ``kvm-telegraf`` command: each option declared once, errors mapped to exit codes.

Like httpie's ``main``: this module parses and checks, then hands typed Settings
to kvm_telegraf/program.py, which does the work. A ``--config`` file may set
every long option an operator's drop-in would (Option.in_config); what it may
hold there follows from the option's own type. Heavy imports (libvirt, the
pipeline) happen only once a run starts, so ``--help`` stays quick.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Dict, Optional, Tuple

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
from kvm_telegraf.groups import ALL, NAMES
from kvm_telegraf.log import safe_line
from kvm_telegraf.measurements import MEASUREMENTS
from kvm_telegraf.settings import Settings, SettingsError

LOG_LEVELS = ("error", "warn", "info", "debug")
FORMATS = ("influx", "table")
# Bounds of each duration: finite and sane, so no timer in libvirt or Python overflows.
INTERVAL = Duration(0.1, 86400.0)
TIMEOUT = Duration(0.01, 3600.0)
FEATURES_REFRESH = Duration(1.0, 7 * 86400.0)
GUEST_REFRESH = Duration(1.0, 86400.0)
SAMPLE = Duration(0.01, 3600.0)
GROUP_NAMES = NAMES
SETTINGS = "kvm_telegraf.settings"  # where the main command leaves its Settings for the subcommands (ctx.meta)
COMPLETE_VAR = "_KVM_TELEGRAF_COMPLETE"  # click's shell completion: bash_source prints the script (README)


class Option(click.Option):
    """A long option; ``--config`` may set it too, holding what its type implies, unless in_config is False.

    non_empty: a repeatable option whose empty list would not mean "none" (``uri``, ``measurement``).
    """

    def __init__(self, *args: Any, in_config: bool = True, non_empty: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_config = in_config
        self.non_empty = non_empty

    @property
    def config_kind(self) -> Optional[str]:
        """What a --config file may hold for it (config.py's wording), or None when it may not set it."""
        if not self.in_config:
            return None
        if self.is_flag:
            return FLAG
        if isinstance(self.type, Duration):
            return DURATION
        if self.multiple:
            if isinstance(self.type, MetadataTagSpec):
                return STRING_TABLE
            return SOME_STRINGS if self.non_empty else STRINGS
        return STRING

    def resolve_envvar_value(self, ctx: click.Context) -> Optional[str]:
        """The environment variable's value even when blank (click 8 reads a blank one as unset), so it is refused."""
        if isinstance(self.envvar, str) and self.envvar in os.environ:
            return os.environ[self.envvar]
        return super().resolve_envvar_value(ctx)


def config_schema(command: click.Command) -> Dict[str, str]:
    """Each key a --config file may set, and what it may hold: the command's own options, nothing restated."""
    kinds = {param.name: param.config_kind for param in command.params if isinstance(param, Option)}
    return {name: kind for name, kind in kinds.items() if name and kind}


def _load_config(ctx: click.Context, _param: click.Parameter, path: Optional[str]) -> None:
    if path:
        ctx.default_map = {**(ctx.default_map or {}), **load_config_file(path, config_schema(ctx.command))}


def _checked_uris(_ctx: click.Context, param: click.Parameter, uris: Tuple[str, ...]) -> Tuple[str, ...]:
    """Each URI given once, and none empty: libvirt opens its own default for an empty one, whatever that is."""
    from kvm_telegraf.connection import redact_uri

    envvar = str(param.envvar)
    if not uris and os.environ.get(envvar) is not None:  # a blank one: the command line would have won over it
        raise click.BadParameter(
            f"{envvar} is set but empty: set it to a libvirt URI (qemu:///system) or unset it", param=param
        )
    if not uris or not all(uri.strip() for uri in uris):
        raise click.BadParameter(
            "must not be empty: libvirt would open its own default URI instead (qemu:///system is this option's)",
            param=param,
        )
    seen = set()
    for uri in uris:
        if uri in seen:
            raise click.BadParameter(f"{redact_uri(uri)} is given twice", param=param)
        seen.add(uri)
    return uris


def _completion_in_click7_words() -> None:
    """The one switch on click's version. click < 8 (7.1 in Debian 11 and RHEL 9) names its completion
    instructions the other way round (``source_bash``, ``complete_bash``) and runs the command for a name it does
    not know: ``bash_source``, which the README and the packages' completion file use, started a collection
    instead of printing the script. Renamed, each click prints its own script, which then asks that click in
    its own words. click 8 is the one with a ``shell_completion`` module.
    """
    shell, _, instruction = os.environ.get(COMPLETE_VAR, "").partition("_")
    if shell in ("bash", "zsh", "fish") and importlib.util.find_spec("click.shell_completion") is None:
        os.environ[COMPLETE_VAR] = f"{instruction}_{shell}"


class TelegrafGroup(click.Group):
    """Reports usage errors as one ``E!`` line, which Telegraf logs as an error, then exits 2."""

    def main(self, args: Any = None, prog_name: Optional[str] = None, **extra: Any) -> Any:  # type: ignore[override]
        _completion_in_click7_words()
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            hint = " (see kvm-telegraf --help)" if isinstance(exc, click.UsageError) else ""
            click.echo(safe_line(f"E! {' '.join(exc.format_message().split())}{hint}"), err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=TelegrafGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kvm-telegraf")
@click.option(
    "--config",
    cls=Option,
    in_config=False,
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="TOML file with the same keys as the long options (underscores).",
)
@click.option(
    "--uri",
    cls=Option,
    non_empty=True,
    multiple=True,
    type=str,  # click 7 takes a tuple default for a tuple type, which it then refuses: "composite type"
    default=("qemu:///system",),
    envvar="KVM_TELEGRAF_URI",
    show_default=True,
    callback=_checked_uris,
    help="libvirt URI, opened read-only (see --read-write). Repeat it to read several hypervisors; each point "
    "then carries a hypervisor tag.",
)
@click.option(
    "--read-write",
    cls=Option,
    is_flag=True,
    help="Open libvirt read-write, as --collect guest needs: this grants full management of every domain "
    "unless libvirt's polkit access driver narrows it (README: Security).",
)
@click.option(
    "--once",
    cls=Option,
    in_config=False,
    is_flag=True,
    help="Print one batch and exit; exit 1 if libvirt cannot be reached.",
)
@click.option(
    "--interval",
    cls=Option,
    type=INTERVAL,
    default=None,
    help=f'Collect on our own timer (Telegraf signal = "none") instead of on stdin newlines ({INTERVAL.bounds}).',
)
@click.option(
    "--timeout",
    cls=Option,
    type=TIMEOUT,
    default="5s",
    show_default=True,
    help=f"Deadline for one bulk stats call; keep it below Telegraf's interval ({TIMEOUT.bounds}).",
)
@click.option("--domain", cls=Option, multiple=True, metavar="GLOB", help="Only domains matching GLOB (repeatable).")
@click.option(
    "--exclude-domain", cls=Option, multiple=True, metavar="GLOB", help="Skip domains matching GLOB (repeatable)."
)
@click.option(
    "--device",
    cls=Option,
    multiple=True,
    metavar="GLOB",
    help="Only devices (disks, NICs) whose device tag matches GLOB get vm_devices points (repeatable); "
    "vm_totals still counts every device.",
)
@click.option(
    "--exclude-device",
    cls=Option,
    multiple=True,
    metavar="GLOB",
    help="No vm_devices point for devices whose device tag matches GLOB, e.g. 'hd[c-d]' for IDE CD-ROMs (repeatable).",
)
@click.option(
    "--measurement",
    cls=Option,
    non_empty=True,
    type=click.Choice(MEASUREMENTS),
    multiple=True,
    help="Emit only these measurements (repeatable; default all four).",
)
@click.option(
    "--collect",
    cls=Option,
    type=click.Choice((*GROUP_NAMES, ALL)),
    multiple=True,
    metavar="GROUP",
    help="Also collect this statistics group (repeatable; all: every one but guest, which needs --read-write): "
    f"{', '.join(GROUP_NAMES)}. "
    "See the README's Groups table for what each adds and costs.",
)
@click.option(
    "--features-refresh",
    cls=Option,
    type=FEATURES_REFRESH,
    default="5m",
    show_default=True,
    help=f"Re-read domain XML and flags this often (also on start and restart of a domain; {FEATURES_REFRESH.bounds}).",
)
@click.option(
    "--guest-refresh",
    cls=Option,
    type=GUEST_REFRESH,
    default="60s",
    show_default=True,
    help=f"With --collect guest: ask each guest agent this often, at most once per cycle ({GUEST_REFRESH.bounds}).",
)
@click.option(
    "--hypervisor-tag",
    cls=Option,
    is_flag=True,
    help="Tag points with libvirt's hostname even with one --uri (a remote host read from elsewhere).",
)
@click.option(
    "--nova",
    cls=Option,
    is_flag=True,
    help="Tag points with OpenStack Nova's nova_name, nova_project, nova_flavor.",
)
@click.option(
    "--metadata-tag",
    cls=Option,
    type=MetadataTagSpec(),
    multiple=True,
    help="Tag points with what XPATH (below <domain>, ending in /@attr for an attribute) finds (repeatable).",
)
@click.option("--log-level", cls=Option, type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@click.option(
    "--format",
    "output_format",
    cls=Option,
    in_config=False,
    type=click.Choice(FORMATS),
    default="influx",
    show_default=True,
    help="table: one row per VM for a person, like virt-top (needs --once).",
)
@click.option(
    "--sample",
    cls=Option,
    in_config=False,
    type=SAMPLE,
    default=None,
    help=f"With --format table: take two readings this far apart and show CPU % and net/disk rates ({SAMPLE.bounds}).",
)
@click.pass_context
def main(ctx: click.Context, **_: Any) -> None:
    """Telegraf execd input: one batch of Influx line protocol per newline on stdin.

    Run it from Telegraf's [[inputs.execd]] with signal = "STDIN", or by hand
    with --once.
    """
    try:
        settings = ctx.meta[SETTINGS] = Settings.from_options(ctx.params)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if ctx.invoked_subcommand:
        return
    from kvm_telegraf.program import run

    ctx.exit(run(settings, click.get_binary_stream("stdin"), click.get_binary_stream("stdout"), _opener(ctx)))


def _opener(ctx: click.Context) -> Any:
    """How connections are opened: what a test passed in ``obj``, else libvirt's own (program.py decides which)."""
    return (ctx.find_root().obj or {}).get("opener")


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
    from kvm_telegraf.program import doctor as run_doctor

    ctx.exit(run_doctor(ctx.meta[SETTINGS], telegraf_interval, _opener(ctx)))


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
    from kvm_telegraf.connection import LibvirtUnavailableError
    from kvm_telegraf.program import record as run_record

    try:
        count = run_record(ctx.meta[SETTINGS], file, cycles, every, _opener(ctx))
    except LibvirtUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {file}: {exc.strerror}") from None
    click.echo(f"recorded {cycles} snapshot(s) of {count} domain(s) to {file}", err=True)
