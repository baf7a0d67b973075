"""Domain XML: metadata tags read from what libvirt returned for a guest carrying Nova's metadata."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from kvm_telegraf.domain_xml import NAMESPACE_MAPS, NOVA_NAMESPACES, NOVA_TAGS, parse_domain_xml, parse_metadata_tag
from kvm_telegraf.xpath import MAX_STEPS, MAX_VISITS, XPathTooCostlyError, compile_path, first_match
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


# --- the work one domain's XML may cost (kvm_telegraf.xpath) ---------------------------------------------------

PATHS_ON_RECORDED_XML = [
    "metadata/nova:instance/nova:name",
    "metadata//nova:name",
    "metadata//*[@name]",
    ".//nova:project",
    "metadata//nova:owner/..",
    ".//*//*//nova:user",
    ".//devices//*//*[@type]",
    "devices/disk[2]/target",
    "devices/disk[last()]",
    "devices/interface[mac]",
    ".//interface//*[@address]",
    "devices/*/alias[@name='net0']/..",
    "metadata//nova:flavor[nova:vcpus='1']",
    "os/type[.='hvm']",
    "*",
    ".//nope",
]


@pytest.mark.parametrize("path", PATHS_ON_RECORDED_XML)
def test_the_bounded_xpath_finds_the_element_elementtree_finds(nova_xml, path):
    root = ElementTree.fromstring(nova_xml)
    assert first_match(root, compile_path(path, NAMESPACE_MAPS[0])) is root.find(path, NAMESPACE_MAPS[0])


def deep_metadata_xml(levels: int, elsewhere: str = "") -> str:
    """A domain whose <metadata> nests *levels* elements deep (libvirt keeps any XML there)."""
    chain = "<k:a>" * levels + "</k:a>" * levels
    return (
        "<domain type='qemu'><name>deep</name><vcpu>2</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<metadata><k:x xmlns:k='urn:kt'>{chain}</k:x>{elsewhere}</metadata><devices><disk type='file'>"
        "<target dev='vda'/></disk></devices></domain>"
    )


HEAVY = "x=metadata//{urn:kt}a//{urn:kt}a//{urn:kt}a//{urn:kt}a//{urn:kt}a//{urn:kt}a//{urn:kt}b"


def test_a_slashes_heavy_xpath_on_250_levels_of_metadata_is_cut_off_and_costs_only_that_tag():
    """Before the bound: 1.4 s of CPU for five // on 100 levels, hours for this; now a few ms."""
    facts = parse_domain_xml(
        deep_metadata_xml(250), [parse_metadata_tag(HEAVY), parse_metadata_tag("arch=os/type/@arch")]
    )
    assert facts.metadata == (("arch", "x86_64"),)
    assert facts.metadata_skipped == (("x", f"its XPath passed more than {MAX_STEPS} elements from step to step"),)
    assert (facts.max_vcpus, facts.machine, facts.disks) == (2, "pc", ("vda",))  # vm_features stays whole


def test_an_xpath_with_slashes_does_not_run_where_one_step_could_visit_more_than_the_bound():
    """ElementTree's C iterators do that work where no step budget counts it: elements x depth bounds it."""
    facts = parse_domain_xml(deep_metadata_xml(1_000), [parse_metadata_tag("x=metadata//{urn:kt}b")])
    ((name, why),) = facts.metadata_skipped
    assert name == "x" and why.startswith("one // step could visit ") and int(why.split()[5]) > MAX_VISITS


@pytest.mark.parametrize(
    "spec", ["x=metadata/{urn:kt}x/{urn:kt}a/{urn:kt}a", "x=metadata//{urn:kt}y/@v", "x=metadata//*[@v]/@v"]
)
def test_a_path_within_the_bounds_reads_its_value_from_deep_metadata(spec):
    facts = parse_domain_xml(
        deep_metadata_xml(250, "<k:y xmlns:k='urn:kt' v='found'>here</k:y>"), [parse_metadata_tag(spec)]
    )
    assert facts.metadata_skipped == () and facts.metadata in ((("x", "found"),), ())


def test_a_tag_given_twice_reads_the_second_path_when_the_first_costs_too_much():
    tags = [parse_metadata_tag(HEAVY), parse_metadata_tag("x=os/type")]
    facts = parse_domain_xml(deep_metadata_xml(250), tags)
    assert facts.metadata == (("x", "hvm"),) and facts.metadata_skipped == ()


def test_the_step_budget_counts_what_each_step_yields_duplicates_included():
    """30 nested a: //a yields 30, //a from each of those 29 + 28 + ... = 435; //b nothing (no b)."""
    root = ElementTree.fromstring(deep_metadata_xml(30))
    steps = compile_path("metadata//{urn:kt}a//{urn:kt}a//{urn:kt}b", {})
    assert first_match(root, steps, max_steps=1 + 30 + 435) is None
    with pytest.raises(XPathTooCostlyError):
        first_match(root, steps, max_steps=1 + 30 + 434)
