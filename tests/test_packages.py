"""The four artifacts of `make dist`, each built from the checkout and used the way an operator would.

The .deb is installed for real with apt on this Debian machine (root): run as the ``telegraf`` user on
the lab guests, upgraded, removed and purged. It is purged at the end in any case, so the machine and
later tests are left as they were. The RPM cannot be installed here (no RHEL), so rpm's
queries inspect it. The wheel goes into a fresh venv on the host's Python; the sdist runs unit tests.
Everything is built into temporary directories: the checkout gains no dist/.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set

import pytest

from kvm_telegraf import __version__
from tests.conftest import need
from tests.harness.cli import only, parse_line

pytestmark = [pytest.mark.lab, pytest.mark.packages]

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
DROP_IN = "/etc/telegraf/telegraf.d/kvm-telegraf.conf"
BINARY = "/usr/bin/kvm-telegraf"
DOC = "/usr/share/doc/kvm-telegraf"
COMPLETION = "/usr/share/bash-completion/completions/kvm-telegraf"
MAN_PAGE = "/usr/share/man/man1/kvm-telegraf.1.gz"
# A lab guest has 2 NICs and 2 disks: vm_metrics, vm_features, 4 x vm_devices, vm_totals.
FULL_BATCH_PER_GUEST = {"vm_metrics": 1, "vm_features": 1, "vm_devices": 4, "vm_totals": 1}
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "dist", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"
)


def run(argv: Sequence[object], env: Optional[Dict[str, str]] = None, timeout: float = 300, cwd: str = "/") -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def dpkg_status() -> str:
    """kvm-telegraf's dpkg status ("install ok installed", "deinstall ok config-files"); "" if not there."""
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "kvm-telegraf"], capture_output=True, text=True)
    return "" if done.returncode or done.stdout.endswith(" not-installed") else done.stdout


def copy_of_checkout(dest: Path, version: str = __version__) -> Path:
    """The checkout's source without its build leftovers, with ``version`` in kvm_telegraf/__init__.py."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE)
    init = dest / "kvm_telegraf" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', f'__version__ = "{version}"'))
    return dest


def a_higher_version() -> str:
    major, minor, patch = __version__.split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


@pytest.fixture(scope="module")
def package_tools() -> None:
    need(os.geteuid() == 0, "needs root: builds offline in a network namespace of its own, installs with apt")
    missing = [tool for tool in ("dpkg-buildpackage", "help2man", "lintian", "rpmbuild") if not shutil.which(tool)]
    need(not missing, f"packaging tools missing (make deps installs them): {missing}")


def offline(argv: Sequence[object]) -> List[object]:
    """argv run with no network at all: a new network namespace holds only a loopback that is down."""
    return ["unshare", "--net", *argv]


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory, package_tools: None) -> Path:
    return Path(run(offline([ROOT / "scripts" / "build-deb", ROOT, tmp_path_factory.mktemp("deb")])).strip())


@pytest.fixture(scope="module")
def newer_deb(tmp_path_factory: pytest.TempPathFactory, package_tools: None) -> Path:
    """The same source rebuilt with a higher version, as the next release would be."""
    source = copy_of_checkout(tmp_path_factory.mktemp("newer") / "src", a_higher_version())
    return Path(run(offline([ROOT / "scripts" / "build-deb", source, tmp_path_factory.mktemp("newer-deb")])).strip())


@pytest.fixture(scope="module")
def python_dists(tmp_path_factory: pytest.TempPathFactory, package_tools: None) -> Dict[str, Path]:
    """The sdist and the wheel, as `make python-dist` builds them."""
    source = copy_of_checkout(tmp_path_factory.mktemp("pydist") / "src")
    out = tmp_path_factory.mktemp("pydist-out")
    run(offline([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source]), cwd=str(source))
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def rpm(tmp_path_factory: pytest.TempPathFactory, python_dists: Dict[str, Path], package_tools: None) -> Path:
    sdist = python_dists["sdist"]
    return Path(run(offline([ROOT / "scripts" / "build-rpm", sdist, tmp_path_factory.mktemp("rpm")])).strip())


def paths_in_deb(deb: Path) -> Set[str]:
    """The paths the package installs, as ``dpkg -L`` names them ("./usr/bin/" -> "/usr/bin", "./" -> "/.")."""
    names = [line.split(None, 5)[5].split(" -> ")[0] for line in run(["dpkg-deb", "-c", deb]).splitlines()]
    return {"/." if name == "./" else name[1:].rstrip("/") for name in names}


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Set[str]]:
    """The .deb installed with apt, once for the module; yields the package's paths that existed before.

    The last two tests change the installation (upgrade, then remove and purge) and run last, in file
    order. Whatever is left is purged at the end.
    """
    need(os.geteuid() == 0, "needs root to install a Debian package")
    need(dpkg_status() == "", "kvm-telegraf is installed on this machine already: not touching it")
    existed_before = {path for path in paths_in_deb(deb) if os.path.lexists(path)}
    try:
        run([*APT, "install", deb], env=APT_ENV)
        yield existed_before
    finally:
        if dpkg_status():
            run(["dpkg", "--purge", "kvm-telegraf"], env=APT_ENV)


def without_command(execd: dict) -> dict:
    return {key: value for key, value in execd.items() if key != "command"}


# --- the .deb, before it is installed ---


def test_lintian_reports_no_error_and_no_warning(deb):
    done = subprocess.run(["lintian", "--fail-on", "error,warning", str(deb)], capture_output=True, text=True)
    tags = [line for line in done.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert (done.returncode, tags) == (0, [])


def test_the_deb_is_for_all_architectures_and_depends_on_the_distros_libvirt_and_click(deb):
    fields = run(["dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends", "Enhances"])
    control = dict(line.split(": ", 1) for line in fields.splitlines())
    assert control["Package"] == "kvm-telegraf" and control["Version"] == __version__
    assert control["Architecture"] == "all"
    depends = [dep.strip().split(" ")[0] for dep in control["Depends"].split(",")]
    assert {"python3-libvirt", "python3-click"} <= set(depends)
    assert control["Enhances"] == "telegraf"
    assert deb.name == f"kvm-telegraf_{__version__}_all.deb"


def test_apt_would_pull_in_only_debian_packages_and_no_compiler_even_onto_an_empty_system(deb):
    # An empty dpkg status: apt resolves every dependency, as on a host with none of them installed.
    argv = ["apt-get", "install", "-s", "-o", "Dir::State::status=/dev/null", str(deb)]
    simulated = run(argv, timeout=120)
    installs = dict(re.findall(r"^Inst (\S+) \(\S+ (\S+?)[:\s]", simulated, re.M))
    assert installs.pop("kvm-telegraf") == "local-deb"
    assert {"python3-libvirt", "python3-click"} <= set(installs)
    assert not {"python3-tomli", "python3-toml"} & set(installs), "Python 3.11 reads --config with its tomllib"
    assert set(installs.values()) <= {"Debian", "Debian-Security"}
    compilers = {
        name for name in installs if re.fullmatch(r"(gcc|g\+\+|cpp|clang)(-\d+)?|.*-dev|build-essential", name)
    }
    assert compilers == set()


def test_no_maintainer_script_restarts_telegraf(deb, tmp_path):
    run(["dpkg-deb", "-e", deb, tmp_path / "control"])
    scripts = {
        p.name: p.read_text()
        for p in (tmp_path / "control").iterdir()
        if p.name in ("preinst", "postinst", "prerm", "postrm")
    }
    assert set(scripts) <= {"postinst", "prerm"}, "only dh_python3's byte-compiling and cleaning"
    for name, text in scripts.items():
        assert not re.search(r"systemctl|invoke-rc\.d|\bservice\b|deb-systemd|restart|reload", text), name


# --- the .deb, installed ---


def test_the_installed_command_prints_the_package_version(installed):
    assert dpkg_status() == "install ok installed"
    version = run(["dpkg-query", "-W", "-f", "${Version}", "kvm-telegraf"])
    assert version == __version__
    assert run([BINARY, "--version"]) == f"kvm-telegraf, version {version}\n"


def test_the_telegraf_user_gets_full_batches_from_the_installed_command(installed, lab):
    # A generous deadline: on a loaded 2-core machine the bulk call can take longer than the default 5 s.
    argv = ["runuser", "-u", "telegraf", "--", BINARY, "--once", "--timeout", "30s", *only(lab)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
    assert (done.returncode, done.stderr) == (0, "")
    lines = [parse_line(line) for line in done.stdout.splitlines()]
    per_guest: Dict[str, Counter] = {}
    for measurement, tags, _fields, _timestamp in lines:
        per_guest.setdefault(tags["vm"], Counter())[measurement] += 1
    assert per_guest == {name: Counter(FULL_BATCH_PER_GUEST) for name in lab}
    assert len({timestamp for *_, timestamp in lines}) == 1, "one timestamp per batch"


def test_the_installed_drop_in_is_a_conffile_that_telegraf_parses_and_its_command_exists(installed, toml_parse):
    conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}", "kvm-telegraf"]).split()
    assert DROP_IN in conffiles
    (execd,) = toml_parse(Path(DROP_IN).read_text())["inputs"]["execd"]
    assert execd["command"] == [BINARY, "--timeout", "5s"]
    assert os.access(execd["command"][0], os.X_OK)
    (source,) = toml_parse((ROOT / "telegraf.d" / "kvm-telegraf.conf").read_text())["inputs"]["execd"]
    assert without_command(execd) == without_command(source), "only the command line differs from the source"
    commented = [line for line in Path(DROP_IN).read_text().splitlines() if line.startswith("  # command = [")]
    assert commented and not any(f'"{BINARY}"' in line for line in commented), "the other install paths stay"


def test_the_man_page_docs_and_bash_completion_are_installed(installed):
    man = gzip.decompress(Path(MAN_PAGE).read_bytes()).decode()
    assert '.TH KVM-TELEGRAF "1"' in man and f"kvm-telegraf {__version__}" in man
    assert "\\fB\\-\\-timeout\\fR" in man and DROP_IN.replace("-", "\\-") in man
    docs = {p.name for p in Path(DOC).iterdir()}
    assert {"copyright", "changelog.gz"} <= docs
    assert {"README.md", "README.md.gz"} & docs and {"CHANGELOG.md", "CHANGELOG.md.gz"} & docs
    assert {"metrics.md", "metrics.md.gz"} & {p.name for p in Path(DOC, "docs").iterdir()}, "the README links to docs/"
    script = f'source {COMPLETION}; COMP_WORDS=(kvm-telegraf --log-level ""); COMP_CWORD=2; '
    script += '_kvm_telegraf_completion kvm-telegraf; printf "%s\\n" "${COMPREPLY[@]}"'
    assert run(["bash", "-c", script]).split() == ["error", "warn", "info", "debug"]


def test_an_upgrade_to_a_higher_version_keeps_the_operators_edited_drop_in(installed, newer_deb):
    assert run(["dpkg-query", "-W", "-f", "${Version}", "kvm-telegraf"]) == __version__
    edited = Path(DROP_IN).read_text().replace('interval = "10s"', 'interval = "30s"')
    assert 'interval = "30s"' in edited
    Path(DROP_IN).write_text(edited)
    run([*APT, "install", newer_deb], env=APT_ENV)
    assert run(["dpkg-query", "-W", "-f", "${Version}", "kvm-telegraf"]) == a_higher_version()
    assert run([BINARY, "--version"]) == f"kvm-telegraf, version {a_higher_version()}\n"
    assert Path(DROP_IN).read_text() == edited
    assert sorted(p.name for p in Path(DROP_IN).parent.iterdir()) == ["kvm-telegraf.conf"], "no .dpkg-dist or -new"


def test_remove_keeps_the_drop_in_and_purge_leaves_nothing_of_ours(installed):
    ours = run(["dpkg", "-L", "kvm-telegraf"]).splitlines()
    assert BINARY in ours and DROP_IN in ours
    run([*APT, "remove", "kvm-telegraf"], env=APT_ENV)
    assert dpkg_status() == "deinstall ok config-files"
    assert Path(DROP_IN).is_file() and not Path(BINARY).exists()
    run([*APT, "purge", "kvm-telegraf"], env=APT_ENV)
    assert dpkg_status() == ""
    assert [path for path in ours if os.path.lexists(path) and path not in installed] == []
    assert not Path("/usr/lib/python3/dist-packages/kvm_telegraf").exists(), "no __pycache__ left behind"


# --- the RPM, inspected ---


def rpm_query(rpm: Path, *args: str) -> List[str]:
    return run(["rpm", "-qp", *args, rpm]).splitlines()


def test_the_rpm_holds_the_binary_the_docs_and_the_drop_in_as_a_noreplace_config_file(rpm):
    assert rpm.name == f"kvm-telegraf-{__version__}-1.el10.noarch.rpm"
    files = set(rpm_query(rpm, "-l"))
    assert {BINARY, DROP_IN, COMPLETION} <= files
    assert {f"{DOC}/README.md", f"{DOC}/CHANGELOG.md", f"{DOC}/docs/metrics.md"} <= files
    assert "/usr/lib/python3.12/site-packages/kvm_telegraf/cli.py" in files
    assert rpm_query(rpm, "--configfiles") == [DROP_IN]
    flags = dict(line.split(" ", 1)[::-1] for line in rpm_query(rpm, "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]"))
    assert flags[DROP_IN] == "cn", "%config(noreplace)"
    assert rpm_query(rpm, "--qf", "%{ARCH} %{VERSION}\n") == [f"noarch {__version__}"]


def test_the_rpm_requires_the_distros_libvirt_and_click_on_python_3_12(rpm):
    requires = set(rpm_query(rpm, "-R"))
    assert {"python3-libvirt", "python3-click >= 7.1", "python(abi) = 3.12"} <= requires


def test_the_rpm_and_the_deb_carry_the_same_drop_in(rpm, deb, tmp_path):
    cpio = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True, timeout=60).stdout
    (tmp_path / "rpm").mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=cpio, cwd=tmp_path / "rpm", check=True, timeout=60)
    run(["dpkg-deb", "-x", deb, tmp_path / "deb"])
    from_rpm, from_deb = ((tmp_path / kind / DROP_IN.lstrip("/")).read_text() for kind in ("rpm", "deb"))
    assert from_rpm == from_deb


# --- the wheel and the sdist ---


def test_twine_accepts_the_wheel_and_the_sdist(python_dists):
    twine = Path(sys.executable).with_name("twine")
    out = run([twine, "check", "--strict", python_dists["sdist"], python_dists["wheel"]])
    assert out.count("PASSED") == 2


def test_the_sdist_holds_every_tracked_file_and_its_unit_tests_pass_from_it(python_dists, tmp_path):
    with tarfile.open(python_dists["sdist"]) as sdist:
        sdist.extractall(tmp_path)
    (unpacked,) = tmp_path.iterdir()
    need((ROOT / ".git").exists(), "not a git checkout")
    tracked = set(run(["git", "-C", ROOT, "ls-files"]).splitlines()) - {".ci/run", ".gitignore"}
    assert sorted(name for name in tracked if not (unpacked / name).is_file()) == []
    tests = ["tests/test_shape.py", "tests/test_config.py", "tests/test_docs.py", "tests/test_packaging.py"]
    out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=str(unpacked))
    assert re.search(r"^\d+ passed", out, re.M) and " failed" not in out


def test_the_wheel_installs_into_a_venv_on_the_hosts_python_and_compiles_nothing(python_dists, tmp_path):
    venv = tmp_path / "venv"
    run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv])
    no_compiler = {**os.environ, "CC": "/bin/false", "CXX": "/bin/false", "LDSHARED": "/bin/false"}
    run([venv / "bin" / "pip", "install", "--no-index", python_dists["wheel"]], env=no_compiler)
    assert run([venv / "bin" / "kvm-telegraf", "--version"]) == f"kvm-telegraf, version {__version__}\n"
    assert list(venv.rglob("*.so")) == []
