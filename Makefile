# kvm-telegraf: every entry point a new user or CI needs.
# `make test` and `make demo` set up whatever is missing (apt packages, the venv, the lab guests).

PYTHON_SYSTEM ?= /usr/bin/python3
VENV          ?= .venv
PY            := $(VENV)/bin/python
LAB           := $(PY) tests/lab/lab.py
RUNTIME_DEBS  := python3-libvirt python3-click python3-venv libvirt-clients
LAB_DEBS      := libvirt-daemon-system qemu-system-x86 qemu-utils busybox-static cpio dbus polkitd debootstrap
TEST_DEBS     := influxdb golang-go golang-github-influxdata-line-protocol-dev golang-github-influxdata-toml-dev
# What `pip install` into a plain venv needs to build libvirt-python from source (tests/test_install.py).
BUILD_DEBS    := libvirt-dev pkg-config gcc python3-dev
BENCH_DEBS    := collectd-core prometheus-libvirt-exporter valgrind
# The Telegraf the end-to-end tests and `make bench` run (tests/test_telegraf.py), built from the Go module
# proxy by scripts/build-telegraf with only these plugins. The version is named here only; a new pin builds
# anew, the same pin never again (after changing TELEGRAF_TAGS: rm -rf .cache/telegraf).
TELEGRAF_VERSION := v1.37.2
TELEGRAF_TAGS    := custom,inputs.execd,inputs.libvirt,inputs.internal,outputs.influxdb,outputs.file,outputs.prometheus_client,parsers.influx,serializers.influx
TELEGRAF         := .cache/telegraf/$(TELEGRAF_VERSION)/telegraf

.PHONY: deps venv telegraf lint test unit demo demo-down goldens bench soak clean

deps:
	./scripts/apt-ensure $(RUNTIME_DEBS) $(LAB_DEBS) $(TEST_DEBS) $(BUILD_DEBS)

# The host's own Python with apt's python3-libvirt: nothing is compiled.
$(PY): pyproject.toml kvm_telegraf/__init__.py
	$(PYTHON_SYSTEM) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(PY)

venv: $(PY)

$(TELEGRAF):
	@mkdir -p $(@D)
	./scripts/build-telegraf $(TELEGRAF_VERSION) $(TELEGRAF_TAGS) $@

telegraf: $(TELEGRAF)

lint: venv
	$(VENV)/bin/ruff check kvm_telegraf tests benchmarks
	$(VENV)/bin/ruff format --check kvm_telegraf tests benchmarks
	$(VENV)/bin/vermin --no-tips --target=3.9- --violations kvm_telegraf

# The whole suite, end-to-end tests on live lab guests included.
test: deps venv lint telegraf
	KVM_TELEGRAF_TELEGRAF=$(abspath $(TELEGRAF)) $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Only the tests that need no lab.
unit: venv
	$(PY) -m pytest -q -m "not lab" $(PYTEST_ARGS)

demo: deps venv
	$(LAB) up 2
	$(VENV)/bin/kvm-telegraf --once --domain "$${KVM_TELEGRAF_LAB_PREFIX:-ktlab-}*"

demo-down:
	$(PYTHON_SYSTEM) tests/lab/lab.py down

# Re-record the golden snapshots from live lab guests, then regenerate the goldens.
goldens: deps venv
	$(PY) tests/record_snapshots.py
	$(PY) -m pytest -q tests/test_shape.py --update-goldens

# Issue #26's targets, each a ratio measured side by side in one run, and the split of the cost: Telegraf +
# kvm-telegraf against Telegraf + inputs.libvirt (4 running, 20 paused ktbench-* guests), the bare call, the
# peers, the stages, memory, callgrind, the synthetic host (about 9 min; not part of `make test`); writes
# benchmarks/results.md. BENCH_ARGS=--scale adds 60 paused guests (about 8 min more); --keep-guests keeps them.
bench: deps venv telegraf
	./scripts/apt-ensure $(BENCH_DEBS)
	KVM_TELEGRAF_TELEGRAF=$(abspath $(TELEGRAF)) $(PY) -m benchmarks.bench $(BENCH_ARGS)

# 2,000 cycles of the real process while ktsoak-* guests start, stop, pause, appear and get renamed
# (5-12 min, not part of `make test`); fails if RSS grows, fds or threads leak, or a batch goes wrong.
# SOAK_ARGS=--keep-guests (or KVM_TELEGRAF_KEEP_LAB=1) keeps the guests.
soak: deps venv
	$(PY) -m tests.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .hypothesis .cache/telegraf

# --- Packages (issue 14): `make dist` puts the .deb, the RPM, the wheel and the sdist into dist/. ---
# Build dependencies of debian/control, help2man for the man page, lintian, and Debian's rpm for the RPM;
# `make deps` installs them too (the prerequisite below), so `make test` can build every package.
PACKAGE_DEBS := debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools python3-wheel \
                python3-click help2man lintian rpm
KVM_TELEGRAF_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' kvm_telegraf/__init__.py)

.PHONY: package-deps deb rpm python-dist dist clean-dist

deps: package-deps
clean: clean-dist

package-deps:
	./scripts/apt-ensure $(PACKAGE_DEBS)

deb: package-deps
	./scripts/build-deb . dist
	lintian --fail-on error,warning dist/kvm-telegraf_$(KVM_TELEGRAF_VERSION)_all.deb

# The wheel and the sdist with `python -m build` from the venv's setuptools (offline), then twine's checks.
python-dist: venv
	rm -f dist/kvm?telegraf-$(KVM_TELEGRAF_VERSION).tar.gz dist/kvm_telegraf-$(KVM_TELEGRAF_VERSION)-*.whl
	$(PY) -m build --no-isolation --outdir dist .
	$(VENV)/bin/twine check --strict dist/kvm-telegraf-$(KVM_TELEGRAF_VERSION).tar.gz \
		dist/kvm_telegraf-$(KVM_TELEGRAF_VERSION)-py3-none-any.whl

# Built from the sdist, which holds kvm-telegraf.spec.
rpm: package-deps python-dist
	./scripts/build-rpm dist/kvm-telegraf-$(KVM_TELEGRAF_VERSION).tar.gz dist

dist: deb rpm

clean-dist:
	rm -rf dist build
