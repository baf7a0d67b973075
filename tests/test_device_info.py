"""``--collect device_info`` and ``--device`` / ``--exclude-device``, on recorded lab guests.

lab-states.json holds a running, a paused and a shut-off guest; lab-backing.json a guest whose vdb has a
backing file (``--collect backing`` gives it two vm_block_chain points); lab-anchors.json a guest with a
serial, an IDE CD-ROM and a NIC on a libvirt network with an interfaceid (tests/record_snapshots.py).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import pytest

from kvm_telegraf.cli import main
from kvm_telegraf.domain_filter import DeviceFilter
from kvm_telegraf.groups import resolve
from kvm_telegraf.points import Point
from kvm_telegraf.shape import EVERY_DEVICE, shape_snapshot
from tests.conftest import load_snapshots
from tests.harness.cli import runner
from tests.harness.nova import NOVA_OVS_NIC
from tests.replay import ReplayConnection

DEVICE_INFO = resolve(["device_info"])


def shaped(name: str, groups=DEVICE_INFO, devices: DeviceFilter = EVERY_DEVICE) -> List[Point]:
    history: Dict = {}
    points: List[Point] = []
    for snapshot in load_snapshots(name):
        points, history = shape_snapshot(snapshot, history, groups=groups, devices=devices)
    return points  # the last cycle's


def tags_of(points: List[Point], measurement: str) -> List[Tuple]:
    return sorted(point.tags for point in points if point.measurement == measurement)


@pytest.mark.parametrize("recording", ["lab-states.json", "lab-running.json", "lab-backing.json", "lab-anchors.json"])
def test_every_vm_devices_point_has_a_vm_device_info_point_with_exactly_its_tags(recording):
    points = shaped(recording)
    assert tags_of(points, "vm_device_info") == tags_of(points, "vm_devices")


def test_a_shut_off_domain_has_its_disks_identity_and_no_nic_as_in_vm_devices():
    points = [p for p in shaped("lab-states.json") if dict(p.tags)["vm"] == "ktlab-03"]
    info = [dict(p.tags) for p in points if p.measurement == "vm_device_info"]
    assert [(tags["device"], tags["type"]) for tags in info] == [("vda", "disk"), ("vdb", "disk")]


def test_a_disk_is_named_by_its_image_and_a_nic_by_its_model_and_tap():
    points = [p for p in shaped("lab-running.json") if dict(p.tags)["vm"] == "ktlab-01"]
    info = {dict(p.tags)["device"]: p.fields for p in points if p.measurement == "vm_device_info"}
    assert info["vda"] == {
        "source": "/var/cache/kvm-telegraf-lab/guests/ktlab-01/vda.img",
        "bus": "virtio",
        "format": "raw",
        "kind": "disk",
    }
    nic = info["52:54:00:6b:01:00"]
    taps = {p.fields["tap"] for p in points if p.measurement == "vm_devices" and "tap" in p.fields}
    assert nic["kind"] == "ethernet" and nic["model"] == "virtio" and nic["target"] in taps


def test_the_recorded_identity_guest_has_its_serial_cdrom_network_mtu_and_bridge():
    points = [p for p in shaped("lab-anchors.json") if dict(p.tags)["vm"].startswith("ktanci-")]
    info = {dict(p.tags)["device"]: p.fields for p in points if p.measurement == "vm_device_info"}
    assert info["vda"]["serial"] == "KTLAB-VDA-0001"
    assert info["hdc"] == {"bus": "ide", "kind": "cdrom"}  # an empty drive: no source, and live, no driver
    (on_network,) = [fields for fields in info.values() if fields.get("kind") == "network"]
    assert on_network["network"] == "ktanci-net" and on_network["mtu"] == 1400 and on_network["bridge"]
    (port,) = [(device, fields) for device, fields in info.items() if fields.get("kind") == "bridge"]
    assert port[0] == port[1]["target"] and port[1]["bridge"] == on_network["bridge"]  # its own tap name: the tag


def test_a_nova_nic_on_open_vswitch_is_tagged_as_vm_devices_tags_it_and_carries_its_neutron_port():
    """Nova's NIC XML (tests/test_device_xml.py) in place of the recorded guest's first NIC: the lab has no
    Open vSwitch, which libvirt needs to start a NIC with an interfaceid."""
    snapshot = load_snapshots("lab-running.json")[-1]
    domain = snapshot.domains[0]
    first_nic = domain.config.xml.split("<interface type='ethernet'>")[1].split("</interface>")[0]
    tap = domain.stats["net.0.name"]
    mac = first_nic.split("address='")[1].split("'")[0]
    nova = NOVA_OVS_NIC.replace("FA:16:3E:4C:2C:30", mac).replace("tap8d7c6b5a-4e", tap)
    xml = domain.config.xml.replace(f"<interface type='ethernet'>{first_nic}</interface>", nova)
    config = dataclasses.replace(domain.config, xml=xml)
    points, _ = shape_snapshot(dataclasses.replace(snapshot, domains=(dataclasses.replace(domain, config=config),)), {},
                               groups=DEVICE_INFO)  # fmt: skip
    info = {dict(p.tags)["device"]: p.fields for p in points if p.measurement == "vm_device_info"}
    assert info[mac] == {"kind": "bridge", "bridge": "br-int", "model": "virtio", "mtu": 1450, "target": tap,
                         "interface_id": "8d7c6b5a-4e3f-4a2b-9c1d-0e9f8a7b6c5d"}  # fmt: skip


@pytest.mark.parametrize(
    ("devices", "kept"),
    [
        (DeviceFilter(exclude=("vdb",)), ["52:54:00:6b:01:00", "52:54:00:6b:01:01", "vda"]),
        (DeviceFilter(include=("vd*",)), ["vda", "vdb"]),
        (DeviceFilter(include=("vd*", "*:00")), ["52:54:00:6b:01:00", "vda", "vdb"]),
        (DeviceFilter(include=("vd*",), exclude=("vda",)), ["vdb"]),
    ],
)
def test_device_globs_choose_the_devices_with_points_and_vm_totals_still_sums_them_all(devices, kept):
    every = shaped("lab-running.json")
    chosen = shaped("lab-running.json", devices=devices)
    for measurement in ("vm_devices", "vm_device_info"):
        names = sorted(
            dict(p.tags)["device"] for p in chosen if p.measurement == measurement and "ktlab-01" in str(p.tags)
        )
        assert names == kept
    assert [p for p in chosen if p.measurement == "vm_totals"] == [p for p in every if p.measurement == "vm_totals"]
    assert [p for p in chosen if p.measurement == "vm_metrics"] == [p for p in every if p.measurement == "vm_metrics"]


def test_an_excluded_disk_loses_its_backing_chain_points_too():
    points = shaped("lab-backing.json", groups=resolve(["backing"]), devices=DeviceFilter(exclude=("vdb",)))
    assert sorted(dict(p.tags)["device"] for p in points if p.measurement == "vm_block_chain") == ["vda"]


def test_exclude_device_from_the_command_line_and_from_a_config_file_leaves_the_same_points_out(tmp_path):
    config = tmp_path / "kvm-telegraf.toml"
    config.write_text('exclude_device = ["vdb", "52:54:00:*"]\n')
    outputs = []
    for args in (["--exclude-device", "vdb", "--exclude-device", "52:54:00:*"], ["--config", str(config)]):
        source = ReplayConnection(load_snapshots("lab-running.json"))
        result = runner().invoke(main, [*args, "--once"], obj={"opener": lambda _uri, source=source: source})
        assert result.exit_code == 0, result.stderr
        outputs.append([line.split(" ")[0] for line in result.stdout.splitlines()])
    assert outputs[0] == outputs[1]
    devices = [line for line in outputs[0] if line.startswith("vm_devices,")]
    assert [line.split("device=")[1].split(",")[0] for line in devices] == ["vda", "vda"]


def test_the_device_options_name_themselves_when_printed():
    assert str(DeviceFilter(("vd*",), ("vdb",))) == "--device 'vd*' --exclude-device vdb"
