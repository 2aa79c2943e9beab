# runbook.ops: `make demo` runs the demo, `make test` runs every test.  See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
COLLECTIONS := $(CURDIR)/.build/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/tests/ansible.cfg
export PATH := $(BIN):$(PATH)

.PHONY: demo test system venv collection services unit ansible-units integration molecule sanity lint changelog bench bench-clean clean

venv: $(VENV)/.dev
collection: $(COLLECTIONS)/ansible_collections/runbook/ops

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt 'ansible-core>=2.19,<2.20'
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# The checkout is the collection: expose it as ansible_collections/runbook/ops.
$(COLLECTIONS)/ansible_collections/runbook/ops:
	mkdir -p $(COLLECTIONS)/ansible_collections/runbook
	ln -sfn $(CURDIR) $@

demo: $(VENV)/.runtime $(COLLECTIONS)/ansible_collections/runbook/ops
	@scripts/demo.sh

system:
	scripts/install-system-packages.sh

services: system $(VENV)/.dev
	VENV=$(VENV) scripts/services.sh start

# UNIT_ARGS: extra pytest arguments (make test leaves tests/unit/plugins to ansible-units).
unit: $(VENV)/.dev $(COLLECTIONS)/ansible_collections/runbook/ops
	$(BIN)/pytest -q tests/unit $(UNIT_ARGS)

# The plugin unit tests under `ansible-test units`, in its own virtualenv, on a clean copy.
ansible-units: $(VENV)/.dev
	scripts/units.sh

# Test files run on TEST_WORKERS processes (pytest-xdist, one file per worker at a time): most of their
# time is spent waiting for services, containers and timeouts, not on the CPU.
TEST_WORKERS ?= 2
integration: services $(COLLECTIONS)/ansible_collections/runbook/ops
	source .build/services/env.sh && $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile tests/integration

molecule: services $(COLLECTIONS)/ansible_collections/runbook/ops
	$(BIN)/molecule test

sanity: $(VENV)/.dev
	scripts/sanity.sh

lint: $(VENV)/.dev $(COLLECTIONS)/ansible_collections/runbook/ops
	$(BIN)/ansible-lint --profile production --nocolor

test: system $(VENV)/.dev
	$(MAKE) ansible-units
	$(MAKE) unit UNIT_ARGS=--ignore=tests/unit/plugins
	$(MAKE) integration
	$(MAKE) molecule
	$(MAKE) sanity
	$(MAKE) lint

# CHANGELOG.rst of the fragments not yet released, built by antsibull-changelog in a copy: a release
# (`antsibull-changelog release` in the checkout) folds the fragments into changelogs/changelog.yaml for good.
CHANGELOG_COPY := $(CURDIR)/.build/changelog/ansible_collections/runbook/ops
changelog: $(VENV)/.dev
	rm -rf $(CHANGELOG_COPY) && mkdir -p $(CHANGELOG_COPY)
	cp -r galaxy.yml changelogs plugins meta roles playbooks $(CHANGELOG_COPY)/
	cd $(CHANGELOG_COPY) && $(BIN)/antsibull-changelog release --version "$$(sed -n 's/^version: *//p' galaxy.yml)"
	@echo "changelog: $(CHANGELOG_COPY)/CHANGELOG.rst"

bench: services $(COLLECTIONS)/ansible_collections/runbook/ops
	source .build/services/env.sh && $(BIN)/python bench/run.py

bench-clean: services
	source .build/services/env.sh && $(BIN)/python bench/run.py backup --clean

clean:
	rm -rf .build .demo
