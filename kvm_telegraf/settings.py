"""The run's settings, typed and checked once at start-up, from the command line and the ``--config`` file.

click parses and converts each option (kvm_telegraf/cli.py declares them once);
Settings.from_options resolves what they mean together (``--collect all``, the
metadata tags of ``--nova``) and refuses combinations that cannot work, so every
stage takes plain typed fields and nothing is looked up by a dict key later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, FrozenSet, Mapping, Optional, Tuple

from kvm_telegraf.domain_filter import DeviceFilter, DomainFilter
from kvm_telegraf.domain_xml import METADATA_TAGS_MAX, NOVA_TAGS, MetadataTag
from kvm_telegraf.group import Group
from kvm_telegraf.groups import implied, resolve
from kvm_telegraf.measurements import MEASUREMENTS

# The measurements whose fields come from the domain XML: vm_features, and vm_devices (a NIC's MAC).
XML_MEASUREMENTS = frozenset({"vm_features", "vm_devices"})


class SettingsError(ValueError):
    """Options that cannot work together; the message says which, on one line."""


@dataclass(frozen=True)
class Settings:
    uris: Tuple[str, ...] = ("qemu:///system",)
    read_write: bool = False
    once: bool = False
    interval_s: Optional[float] = None  # None: collect on stdin newlines
    timeout_s: float = 5.0
    domain_filter: DomainFilter = field(default_factory=DomainFilter)
    device_filter: DeviceFilter = field(default_factory=DeviceFilter)
    measurements: FrozenSet[str] = frozenset(MEASUREMENTS)
    groups: Tuple[Group, ...] = ()  # --collect, resolved, in registry order
    implied_groups: FrozenSet[str] = frozenset()  # the ones only ``all`` brought in: quiet where the daemon lacks them
    features_refresh_s: float = 300.0
    guest_refresh_s: float = 60.0
    hypervisor_tag: bool = False
    metadata_tags: Tuple[MetadataTag, ...] = ()  # --metadata-tag, then --nova's
    log_level: str = "info"
    output_format: str = "influx"
    sample_s: Optional[float] = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Settings:
        """The settings of click's converted options (the main command's ctx.params); SettingsError if they clash."""
        settings = cls(
            uris=tuple(options["uri"]),
            read_write=options["read_write"],
            once=options["once"],
            interval_s=options["interval"],
            timeout_s=options["timeout"],
            domain_filter=DomainFilter(tuple(options["domain"]), tuple(options["exclude_domain"])),
            device_filter=DeviceFilter(tuple(options["device"]), tuple(options["exclude_device"])),
            measurements=frozenset(options["measurement"] or MEASUREMENTS),
            groups=resolve(options["collect"] or ()),
            implied_groups=implied(options["collect"] or ()),
            features_refresh_s=options["features_refresh"],
            guest_refresh_s=options["guest_refresh"],
            hypervisor_tag=options["hypervisor_tag"],
            metadata_tags=tuple(options["metadata_tag"]) + (NOVA_TAGS if options["nova"] else ()),
            log_level=options["log_level"],
            output_format=options["output_format"],
            sample_s=options["sample"],
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse what cannot work together, naming the options."""
        if self.once and self.interval_s:
            raise SettingsError("--once and --interval exclude each other")
        if self.interval_s is not None and self.timeout_s >= self.interval_s:
            raise SettingsError(f"--timeout must be shorter than --interval ({self.interval_s:g}s)")
        if self.output_format == "table" and not self.once:
            raise SettingsError("--format table needs --once (it is for a person, not for Telegraf)")
        if self.sample_s is not None and self.output_format != "table":
            raise SettingsError("--sample needs --format table")
        needs_write = [group.name for group in self.groups if group.read_write]
        if self.read_write and not needs_write:
            raise SettingsError(
                "--read-write is only for --collect guest, which is not asked for: drop --read-write (every "
                "other call is made on a read-only connection)"
            )
        tags = {tag.name for tag in self.metadata_tags}
        if len(tags) > METADATA_TAGS_MAX:
            raise SettingsError(
                f"--metadata-tag names {len(tags)} tags (--nova's included), more than {METADATA_TAGS_MAX}: "
                "InfluxDB refuses a point whose series key passes 65,535 bytes"
            )
        for group in self.groups:
            if group.read_write and not self.read_write:
                raise SettingsError(
                    f"--collect {group.name} needs --read-write: libvirt answers its calls only on a read-write "
                    "connection (the README's Security section says what that grants)"
                )

    @property
    def wants_xml(self) -> bool:
        """Whether anything this run reports comes from the domains' XML."""
        return bool(self.measurements & XML_MEASUREMENTS or self.metadata_tags or any(g.reads_xml for g in self.groups))

    @property
    def wants_events(self) -> bool:
        """Whether a group reports libvirt's domain events."""
        return any(group.events for group in self.groups)
