# harepl: `make demo` runs a local cluster with demo services, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install system-deps test test-slow demo lint conformance clean deb rootfs

install: $(VENV)/.installed system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Debian's OCF resource agents and iproute2 (network namespaces); needs root + apt.
system-deps:
	@bash scripts/install-system-deps

test: install
	$(BIN)/pytest -q -m "not slow"

# the Debian package and root file system (tests/deploy, ~7 min: mmdebstrap); CI runs it too
test-slow: install
	$(BIN)/pytest -q -m slow

demo: install
	$(BIN)/harepl demo   # a real 3-node lab; `harepl sim demo` is the simulated one

lint: install
	$(BIN)/ruff check harepl tui tests
	$(BIN)/mypy

# dist/harepl_VERSION-1_ARCH.deb: /opt/harepl venv on Debian's python3, units, tmpfiles (deploy/build-deb)
deb: install system-deps
	bash deploy/build-deb

# dist/harepl-rootfs.tar: Debian bookworm + systemd + that package, units enabled (deploy/build-rootfs)
rootfs: deb
	bash deploy/build-rootfs

conformance: install
	../shared/tools/pve-conformance ../shared/pve-tests/*

clean:
	rm -rf $(VENV) build *.egg-info
