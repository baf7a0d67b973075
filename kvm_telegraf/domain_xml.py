"""Configuration facts from a domain's XML: parsed once per fetch, never per cycle."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class DomainFacts:
    os_type: Optional[str] = None
    arch: Optional[str] = None
    machine: Optional[str] = None
    firmware: Optional[str] = None  # "bios" or "efi"
    max_vcpus: Optional[int] = None
    disk_count: int = 0
    interface_count: int = 0
    features: Tuple[Tuple[str, bool], ...] = ()  # (element name, enabled) under <features>


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


def _int_or_none(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_domain_xml(xml: str) -> DomainFacts:
    """Read the facts vm_features reports; ValueError when the XML does not parse.

    A feature element with ``state='off'`` (``<vmport state='off'/>``) counts as disabled.
    """
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"domain XML does not parse: {exc}") from None
    os_element = root.find("os")
    os_type = os_element.find("type") if os_element is not None else None
    features = root.find("features")
    return DomainFacts(
        os_type=os_type.text if os_type is not None else None,
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        firmware=_firmware(os_element),
        max_vcpus=_int_or_none(root.findtext("vcpu")),
        disk_count=len(root.findall("devices/disk")),
        interface_count=len(root.findall("devices/interface")),
        features=tuple(
            (child.tag, child.get("state") != "off") for child in (features if features is not None else ())
        ),
    )
