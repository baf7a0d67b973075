"""Domain XML: metadata tags read from what libvirt returned for a guest carrying Nova's metadata."""

from __future__ import annotations

import pytest

from kvm_telegraf.domain_xml import NOVA_NAMESPACES, NOVA_TAGS, parse_domain_xml, parse_metadata_tag
from tests.conftest import load_snapshots


@pytest.fixture(scope="module")
def nova_xml() -> str:
    """The live XML of a lab guest whose <metadata> Nova's layout filled (tests/record_snapshots.py nova)."""
    config = load_snapshots("nova-metadata.json")[0].domains[0].config
    assert config is not None
    return config.xml


def test_nova_tags_read_the_instance_name_project_and_flavor(nova_xml):
    metadata = dict(parse_domain_xml(nova_xml, NOVA_TAGS).metadata)
    assert metadata == {"nova_name": "web frontend 01", "nova_project": "demo", "nova_flavor": "kt.tiny"}


def test_nova_tags_also_read_the_older_1_0_namespace(nova_xml):
    older = nova_xml.replace(NOVA_NAMESPACES[0], NOVA_NAMESPACES[1])
    assert older != nova_xml
    assert dict(parse_domain_xml(older, NOVA_TAGS).metadata)["nova_project"] == "demo"


def test_a_domain_without_nova_metadata_gets_no_nova_tags():
    (snapshot, _) = load_snapshots("lab-running.json")
    config = snapshot.domains[0].config
    assert config is not None
    assert parse_domain_xml(config.xml, NOVA_TAGS).metadata == ()


def test_the_nova_shortcut_is_what_the_equivalent_metadata_tag_options_give():
    specs = [
        "nova_name=metadata/nova:instance/nova:name",
        "nova_project=metadata/nova:instance/nova:owner/nova:project",
        "nova_flavor=metadata/nova:instance/nova:flavor/@name",
    ]
    assert tuple(parse_metadata_tag(spec) for spec in specs) == NOVA_TAGS


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("port=/domain/metadata/nova:instance/nova:ports/nova:port/@uuid", "8d7c6b5a-4e3f-4a2b-9c1d-0e9f8a7b6c5d"),
        ("domain_type=@type", "qemu"),
        ("user=.//nova:user", "admin"),
        ("fixed_ip=metadata/nova:instance/nova:ports/nova:port/nova:ip[@type='fixed']/@address", "169.254.10.2"),
        ("description=description", "kvm-telegraf test lab guest"),
        ("flavor=/domain/metadata//@name", "kt.tiny"),
    ],
)
def test_a_metadata_tag_reads_element_text_or_an_attribute_anywhere_below_domain(nova_xml, spec, expected):
    tag = parse_metadata_tag(spec)
    assert parse_domain_xml(nova_xml, [tag]).metadata == ((tag.name, expected),)


def test_empty_values_and_elements_that_only_hold_other_elements_give_no_tag(nova_xml):
    tags = [parse_metadata_tag("owner=metadata/nova:instance/nova:owner"), parse_metadata_tag("missing=metadata/x")]
    assert parse_domain_xml(nova_xml, tags).metadata == ()


def test_a_tag_given_twice_takes_the_first_path_that_matches(nova_xml):
    tags = [parse_metadata_tag("who=metadata/nova:instance/nova:nobody"), parse_metadata_tag("who=.//nova:user")]
    tags.append(parse_metadata_tag("who=.//nova:project"))
    assert parse_domain_xml(nova_xml, tags).metadata == (("who", "admin"),)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nova_name", "expected TAG=XPATH"),
        ("=metadata/x", "expected TAG=XPATH"),
        ("nova_name=", "expected TAG=XPATH"),
        ("vm=metadata/x", "tag name 'vm' is taken"),
        ("hypervisor=metadata/x", "tag name 'hypervisor' is taken"),
        ("9lives=metadata/x", "tag name '9lives' must be letters"),
        ("a b=metadata/x", "tag name 'a b' must be letters"),
        ("x=//nova:name", "must start at <domain>"),
        ("x=metadata/[", "is not one ElementTree can evaluate"),
        ("x=metadata/foo:bar", "prefix 'foo' not found"),
        ("x=metadata/nova:instance/text()", "is not one ElementTree can evaluate"),
        ("x=metadata/a[0]", "XPath position >= 1 expected"),
    ],
)
def test_a_bad_metadata_tag_is_refused_with_a_one_line_reason(spec, message):
    with pytest.raises(ValueError) as error:
        parse_metadata_tag(spec)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def running_xml() -> str:
    config = load_snapshots("lab-running.json")[0].domains[0].config
    assert config is not None
    return config.xml


def test_each_nic_is_read_as_its_target_dev_and_mac(running_xml):
    assert parse_domain_xml(running_xml).interfaces == (("vnet1", "52:54:00:6b:01:00"), ("vnet3", "52:54:00:6b:01:01"))


def test_a_nic_without_a_target_dev_has_no_entry_and_a_mac_is_read_in_lower_case(running_xml):
    changed = running_xml.replace("<target dev='vnet1'/>", "").replace("52:54:00:6b:01:01", "52:54:00:6B:01:01")
    assert parse_domain_xml(changed).interfaces == (("vnet3", "52:54:00:6b:01:01"),)


@pytest.mark.parametrize(
    ("balloon", "period"),
    [
        ("<memballoon model='virtio'><stats period='2'/></memballoon>", 2),
        ("<memballoon model='virtio'/>", 0),
        ("<memballoon model='none'/>", None),
        ("", None),
    ],
)
def test_the_balloon_stats_period_is_read_with_the_facts(running_xml, balloon, period):
    start, end = running_xml.index("<memballoon"), running_xml.index("</memballoon>") + len("</memballoon>")
    assert parse_domain_xml(running_xml[:start] + balloon + running_xml[end:]).balloon_period == period
