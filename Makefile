# Thin wrappers a newcomer can read. STACK selects the Pulumi stack (dev, prod, pr-<n>).
STACK ?= dev
VENV ?= venv
CHECKOV_VENV ?= .venv-checkov
PYTHON ?= python3
PY := $(VENV)/bin/python
PULUMI ?= pulumi
# Secrets in the local (file) backend are encrypted with a passphrase. Unless you provide one
# (PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE), one is generated once into
# .pulumi-passphrase (git-ignored, mode 600): keep it with your state, it decrypts your secrets.
ifeq ($(origin PULUMI_CONFIG_PASSPHRASE)$(origin PULUMI_CONFIG_PASSPHRASE_FILE),undefinedundefined)
GENERATED_PASSPHRASE := $(CURDIR)/.pulumi-passphrase
export PULUMI_CONFIG_PASSPHRASE_FILE := $(GENERATED_PASSPHRASE)
endif
STACK_ARGS := --stack $(STACK) --policy-pack policy
# up/preview/drift/destroy need the Pulumi CLI: without it, stop here, before any rule runs (no venv, no
# passphrase file), with one line saying what to install.
ifneq ($(filter up preview drift destroy stack,$(MAKECMDGOALS)),)
ifeq ($(shell command -v $(PULUMI) 2>/dev/null),)
$(error $(PULUMI) not found: install the Pulumi CLI (https://www.pulumi.com/docs/install/), or build it with `make engine` and run with PULUMI=engine/bin/pulumi)
endif
endif

.PHONY: check up preview drift destroy test test-unit lint engine bench render docs stack clean cluster cluster-down

check: $(VENV)/.runtime  ## step one: validate STACK's configuration offline (prints only the problems)
	@$(PY) -m tools.check_config $(STACK)

up: check stack  ## create or update the platform; reads the live objects first (--refresh), so it also repairs drift
	$(PULUMI) up --refresh $(STACK_ARGS)

preview: check stack  ## show what `up` would change (drift check)
	$(PULUMI) preview $(STACK_ARGS) --diff

drift: stack  ## has the cluster drifted from the state (refresh), or the program/config from the state (preview)? Writes nothing
	@# PULUMI_SKIP_CONFIRMATIONS (CI's --yes) cannot go with --preview-only.
	env -u PULUMI_SKIP_CONFIRMATIONS $(PULUMI) refresh --stack $(STACK) --preview-only --expect-no-changes --diff
	$(PULUMI) preview --stack $(STACK) --expect-no-changes --diff

destroy: stack  ## remove everything the stack created (prod data is protected)
	$(PULUMI) destroy --stack $(STACK)

test: lint $(CHECKOV_VENV)/.installed engine  ## every layer: ruff, mypy, unit, manifests, policy, workflows, integration, real engine
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest tests

test-unit: $(VENV)/.dev  ## the fast layer only (no checkov, no real services, no engine)
	$(PY) -m pytest tests -m "not integration and not engine and not live" --ignore=tests/test_manifests.py

lint: $(VENV)/.dev  ## ruff (lint + format check), mypy over the program and tools, mypy --strict over config/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict config

engine:  ## build the Pulumi CLI and provider plugins (and the MinIO server and mc the tests run) from their Go modules into engine/bin (cached)
	bash engine/build.sh

cluster: $(VENV)/.dev  ## a local Kubernetes v1.36.3 control plane (etcd, apiserver, controllers, scheduler, kwok node) on loopback, in the background
	@$(PY) -m tools.local_cluster up --dir build/cluster

cluster-down: $(VENV)/.dev  ## stop what `make cluster` started (its logs stay in build/cluster/logs)
	@$(PY) -m tools.local_cluster down --dir build/cluster

bench: $(VENV)/.dev  ## the tracking server vs its peers (build/bench/), critical path, footprint per profile
	ENGINE_ONLY="minio mc" bash engine/build.sh
	PATH="$$PATH:$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)" $(PY) -m bench.bench

render: check  ## check STACK, then write its Kubernetes objects to build/manifests/STACK (the same files on every run: diff -r two renders to review a change)
	$(PY) -m tools.render $(STACK)

docs: $(VENV)/.runtime  ## regenerate Pulumi.yaml's config block from config/model.py, then docs/configuration.md from it
	$(PY) -m config.project_file
	$(PY) -m tools.config_reference

stack: $(VENV)/.runtime $(GENERATED_PASSPHRASE)
	@if [ -n "$$PULUMI_CONFIG_PASSPHRASE_FILE" ] && [ ! -f "$$PULUMI_CONFIG_PASSPHRASE_FILE" ]; then \
	  echo "PULUMI_CONFIG_PASSPHRASE_FILE=$$PULUMI_CONFIG_PASSPHRASE_FILE does not exist: point it at your passphrase file, or unset it to let make generate .pulumi-passphrase" >&2; exit 2; fi
	@case "$(STACK)" in pr-*) [ -f Pulumi.$(STACK).yaml ] || cp profiles/pr.yaml Pulumi.$(STACK).yaml;; esac
	@$(PULUMI) stack select --create $(STACK) >/dev/null

ifdef GENERATED_PASSPHRASE
$(GENERATED_PASSPHRASE):
	@umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(32))" > $@
	@echo "Generated $@: it encrypts this project's stack secrets. Back it up with your state."
endif

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt requirements-mlflow.txt
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -r requirements-mlflow.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r requirements-checkov.txt
	touch $@

clean:
	@[ ! -f build/cluster/state.json ] || $(PY) -m tools.local_cluster down --dir build/cluster
	rm -rf build .pytest_cache
