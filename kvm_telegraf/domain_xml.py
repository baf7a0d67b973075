"""Configuration facts from a domain's XML: parsed once per fetch, never per cycle."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Tuple

from kvm_telegraf.device_xml import DiskIdentity, HostDevice, NicIdentity, disk_identities, host_devices, nic_identities
from kvm_telegraf.log import clip
from kvm_telegraf.xpath import (
    MAX_STEPS,
    MAX_VISITS,
    Step,
    XPathTooCostlyError,
    compile_path,
    descends,
    first_match,
    visits,
)

# Prefixes a metadata XPath may use. Nova has written two namespaces (Nova 18 wrote 1.0,
# Nova 25 writes 1.1); ``nova:`` matches either, the newer first.
NOVA_NAMESPACES = ("http://openstack.org/xmlns/libvirt/nova/1.1", "http://openstack.org/xmlns/libvirt/nova/1.0")
OVIRT_NAMESPACES = {"ovirt-vm": "http://ovirt.org/vm/1.0", "ovirt-tune": "http://ovirt.org/vm/tune/1.0"}
NAMESPACE_MAPS = tuple({"nova": nova, **OVIRT_NAMESPACES} for nova in NOVA_NAMESPACES)
# What a metadata tag may add to a series key (README: Security), so that with the guest's tags (guest_agent) every
# key stays far below InfluxDB 1.x's 65,535 bytes: at most METADATA_TAGS_MAX tags, names of at most
# METADATA_NAME_MAX_CHARS (both checked at start-up), each value cut to METADATA_VALUE_MAX_CHARS where the XML is
# read (log.clip: its first characters and "...(N more characters)").
METADATA_TAGS_MAX = 32
METADATA_NAME_MAX_CHARS = 64
METADATA_VALUE_MAX_CHARS = 256
# Tags every point already carries, or that Telegraf adds.
RESERVED_TAGS = frozenset({"vm", "uuid", "device", "type", "hypervisor", "host"})
_TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_ATTRIBUTE = re.compile(r"(?:^|/)@([A-Za-z_][A-Za-z0-9_.-]*)\Z")
# ElementTree reports a malformed path with whichever of these its parser trips over.
_PATH_ERRORS = (SyntaxError, KeyError, TypeError, ValueError, IndexError, StopIteration, AttributeError)


@dataclass(frozen=True)
class MetadataTag:
    """A tag read from the domain XML: an ElementTree path below ``<domain>``, its text or one attribute."""

    name: str
    path: str
    attribute: Optional[str] = None
    # The path compiled once per namespace map it is read with (kvm_telegraf.xpath bounds its work).
    steps: Tuple[List[Step], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        maps = NAMESPACE_MAPS if "nova:" in self.path else NAMESPACE_MAPS[:1]
        object.__setattr__(self, "steps", tuple(compile_path(self.path, namespaces) for namespaces in maps))

    def read(self, root: ElementTree.Element) -> Optional[str]:
        """The stripped text or attribute of the first match; None when absent or empty.

        XPathTooCostlyError when the path needs more than xpath.MAX_STEPS steps on this document.
        """
        for steps in self.steps:
            element = first_match(root, steps)
            if element is not None:
                value = element.get(self.attribute) if self.attribute else element.text
                return (value or "").strip() or None
        return None


def parse_metadata_tag(spec: str) -> MetadataTag:
    """``TAG=XPATH`` checked once at start-up; ValueError says what is wrong, on one line.

    XPATH is ElementTree's XPath subset, relative to ``<domain>`` (a leading
    ``/domain/`` is accepted), optionally ending in ``/@attribute``.

    >>> parse_metadata_tag("nova_flavor=metadata/nova:instance/nova:flavor/@name")
    MetadataTag(name='nova_flavor', path='metadata/nova:instance/nova:flavor', attribute='name')
    """
    name, sep, xpath = spec.partition("=")
    name, xpath = name.strip(), xpath.strip()
    if not sep or not name or not xpath:
        raise ValueError(f"expected TAG=XPATH, got {clip(repr(spec))}")
    if len(name) > METADATA_NAME_MAX_CHARS:
        raise ValueError(f"tag name {clip(repr(name), 80)} is longer than {METADATA_NAME_MAX_CHARS} characters")
    if not _TAG_NAME.match(name):
        raise ValueError(
            f"tag name {clip(repr(name))} must be letters, digits, '_', '.' or '-', not starting with a digit"
        )
    if name in RESERVED_TAGS:
        raise ValueError(f"tag name {clip(repr(name))} is taken: every point carries it already")
    path = xpath
    if xpath.startswith("/"):
        if xpath != "/domain" and not xpath.startswith("/domain/"):
            raise ValueError(f"XPath {clip(repr(xpath))} must start at <domain>: metadata/..., or /domain/metadata/...")
        path = "." + xpath[len("/domain") :]
    attribute = None
    match = _ATTRIBUTE.search(path)
    if match:
        attribute, path = match.group(1), path[: match.start()]
        if path.endswith("/"):  # "//@name": the first element below that has the attribute
            path += f"/*[@{attribute}]"
        path = path or "."
    try:
        tag = MetadataTag(name, path, attribute)
        tag.read(ElementTree.fromstring("<domain><metadata/></domain>"))
    except _PATH_ERRORS as exc:
        reason = f": {exc}" if isinstance(exc, SyntaxError) else ""
        known = ", ".join(NAMESPACE_MAPS[0])
        raise ValueError(
            f"XPath {clip(repr(xpath))} is not one ElementTree can evaluate{reason} (namespace prefixes: {known})"
        ) from None
    return tag


# --nova: the instance's display name, project name and flavor name as Nova records them.
NOVA_TAGS = (
    MetadataTag("nova_name", "metadata/nova:instance/nova:name"),
    MetadataTag("nova_project", "metadata/nova:instance/nova:owner/nova:project"),
    MetadataTag("nova_flavor", "metadata/nova:instance/nova:flavor", "name"),
)


@dataclass(frozen=True)
class DomainFacts:
    os_type: Optional[str] = None
    arch: Optional[str] = None
    machine: Optional[str] = None
    firmware: Optional[str] = None  # "bios" or "efi"
    max_vcpus: Optional[int] = None
    disk_count: int = 0
    interface_count: int = 0
    interfaces: Tuple[Tuple[str, Optional[str]], ...] = ()  # (target dev, MAC) of each NIC with a target dev
    balloon_period: Optional[int] = None  # <memballoon><stats period> in s (0: none set); None: no balloon
    features: Tuple[Tuple[str, bool], ...] = ()  # (element name, enabled) under <features>
    metadata: Tuple[Tuple[str, str], ...] = ()  # (tag, value) per --metadata-tag that matched
    metadata_cut: Tuple[Tuple[str, int], ...] = ()  # (tag, its value's length) per value cut to the bound
    # (tag, why) per --metadata-tag not read here: its XPath would cost more than kvm_telegraf.xpath allows.
    metadata_skipped: Tuple[Tuple[str, str], ...] = ()
    disks: Tuple[str, ...] = ()  # each disk's target dev (vda): the block_limits group asks libvirt per disk
    disk_identities: Tuple[DiskIdentity, ...] = ()  # each disk's image, bus, format, serial, kind
    nic_identities: Tuple[NicIdentity, ...] = ()  # each NIC's bridge, network, model, MTU, tap, Neutron port
    host_devices: Tuple[HostDevice, ...] = ()  # the host's devices passed through (GPUs, SR-IOV NICs, mdevs)
    vcpu_cpuset: Optional[str] = None  # <vcpu cpuset>: where every vCPU without a <vcpupin> may run
    vcpu_pins: Tuple[Tuple[int, str], ...] = ()  # (vCPU, cpuset) of each <cputune><vcpupin>
    # The guest agent channel's state in the live XML: "connected", "disconnected"; None without a channel.
    agent_state: Optional[str] = None


def _firmware(os_element: Optional[ElementTree.Element]) -> Optional[str]:
    if os_element is None:
        return None
    declared = os_element.get("firmware")
    if declared:
        return declared
    loader = os_element.find("loader")
    if loader is not None and (loader.get("type") == "pflash" or loader.text):
        return "efi"
    return "bios"


def _balloon_period(root: ElementTree.Element) -> Optional[int]:
    """The memory balloon's stats period in seconds (0: none set); None without a balloon device."""
    balloon = root.find("devices/memballoon")
    if balloon is None or balloon.get("model") == "none":
        return None
    stats = balloon.find("stats")
    return (_int_or_none(stats.get("period")) or 0) if stats is not None else 0


def _int_or_none(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _interface_addresses(root: ElementTree.Element) -> Tuple[Tuple[str, Optional[str]], ...]:
    """(target dev, MAC address) of each NIC with a target dev: how bulk stats' tap names map to MACs."""
    pairs = []
    for nic in root.findall("devices/interface"):
        target, mac = nic.find("target"), nic.find("mac")
        dev = target.get("dev") if target is not None else None
        address = mac.get("address") if mac is not None else None
        if dev:
            pairs.append((dev, address.lower() if address else None))
    return tuple(pairs)


def _vcpu_pins(root: ElementTree.Element) -> Tuple[Tuple[int, str], ...]:
    pins = []
    for pin in root.findall("cputune/vcpupin"):
        vcpu, cpuset = _int_or_none(pin.get("vcpu")), pin.get("cpuset")
        if vcpu is not None and cpuset:
            pins.append((vcpu, cpuset))
    return tuple(pins)


def _disk_targets(root: ElementTree.Element) -> Tuple[str, ...]:
    targets = (disk.find("target") for disk in root.findall("devices/disk"))
    return tuple(target.get("dev", "") for target in targets if target is not None and target.get("dev"))


GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def _agent_state(root: ElementTree.Element) -> Optional[str]:
    """The state libvirt keeps on the guest agent channel's target; "" when the channel has none (shut off)."""
    for target in root.findall("devices/channel/target"):
        if target.get("name") == GUEST_AGENT_CHANNEL:
            return target.get("state", "")
    return None


def metadata_values(
    root: ElementTree.Element, tags: Iterable[MetadataTag]
) -> Tuple[Tuple[Tuple[str, str], ...], Tuple[Tuple[str, str], ...]]:
    """(tag, value) for each tag that matched, and (tag, why) for each whose XPath was not run to its end.

    A tag given twice takes the first path that matches. A path with ``//`` does not run where one such step
    could visit more than xpath.MAX_VISITS elements, and no path runs past xpath.MAX_STEPS: such a domain
    costs only its own tag. The values are whole here (metadata_cut cuts them).
    """
    values, skipped = {}, {}
    most: Optional[int] = None
    for tag in tags:
        if tag.name in values:
            continue
        if descends(tag.path):
            most = visits(root) if most is None else most
            if most > MAX_VISITS:
                skipped[tag.name] = f"one // step could visit {most} elements of its XML (elements x depth)"
                continue
        try:
            value = tag.read(root)
        except XPathTooCostlyError:
            skipped[tag.name] = f"its XPath passed more than {MAX_STEPS} elements from step to step"
            continue
        if value is not None:
            values[tag.name] = value
            skipped.pop(tag.name, None)
    return tuple(values.items()), tuple(skipped.items())


def metadata_cut(
    values: Tuple[Tuple[str, str], ...],
) -> Tuple[Tuple[Tuple[str, str], ...], Tuple[Tuple[str, int], ...]]:
    """The values cut to METADATA_VALUE_MAX_CHARS, and (tag, length) for each that was: a series key has a bound."""
    cut = tuple((tag, len(value)) for tag, value in values if len(value) > METADATA_VALUE_MAX_CHARS)
    if not cut:
        return values, ()
    return tuple((tag, clip(value, METADATA_VALUE_MAX_CHARS)) for tag, value in values), cut


def parse_domain_xml(xml: str, metadata_tags: Iterable[MetadataTag] = ()) -> DomainFacts:
    """Read the facts vm_features reports, and the metadata tags; ValueError when the XML does not parse.

    A feature element with ``state='off'`` (``<vmport state='off'/>``) counts as disabled.
    """
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"domain XML does not parse: {exc}") from None
    os_element = root.find("os")
    os_type = os_element.find("type") if os_element is not None else None
    features = root.find("features")
    metadata, metadata_skipped = metadata_values(root, metadata_tags)
    metadata, cut = metadata_cut(metadata)
    return DomainFacts(
        os_type=os_type.text if os_type is not None else None,
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        firmware=_firmware(os_element),
        max_vcpus=_int_or_none(root.findtext("vcpu")),
        disk_count=len(root.findall("devices/disk")),
        interface_count=len(root.findall("devices/interface")),
        interfaces=_interface_addresses(root),
        balloon_period=_balloon_period(root),
        features=tuple(
            (child.tag, child.get("state") != "off") for child in (features if features is not None else ())
        ),
        metadata=metadata,
        metadata_cut=cut,
        metadata_skipped=metadata_skipped,
        disks=_disk_targets(root),
        disk_identities=disk_identities(root),
        nic_identities=nic_identities(root),
        host_devices=host_devices(root),
        vcpu_cpuset=root.find("vcpu").get("cpuset") if root.find("vcpu") is not None else None,
        vcpu_pins=_vcpu_pins(root),
        agent_state=_agent_state(root),
    )
