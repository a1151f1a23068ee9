# federated.nvflare: the two commands of the README, and targets for working on one part.
# Every target installs what it needs (see scripts/bootstrap.sh); re-running skips what is
# already in place.

SHELL := /bin/bash
SCENARIO ?=
RUNTIME ?=
PYTEST_ARGS ?=
# make controller: AZURE=1 adds azure.azcollection and its SDK; PYTHON names another interpreter.
AZURE ?=
PYTHON ?=

.PHONY: help controller bootstrap demo-setup demo demo-stop test lint sanity build galaxy-importer ee docs unit functional molecule \
        wheelhouse image docker-start docker-stop clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

controller: ## Ready this clone as an Ansible controller, no root: .venv with ansible-core, NVFlare, boto3, the collections (AZURE=1: Azure too)
	@AZURE=$(AZURE) $(if $(PYTHON),PYTHON=$(PYTHON)) scripts/controller.sh

bootstrap: ## Everything the tests need: apt packages, the controller, the test tools (as root)
	@scripts/bootstrap.sh test

demo-setup: ## What the demo needs, and only that: a few apt packages, the controller, the demo's wheelhouse
	@scripts/bootstrap.sh $(if $(filter container,$(RUNTIME)),container,demo)
	@$(if $(filter container,$(RUNTIME)),scripts/wheelhouse.sh all,true)

demo: demo-setup $(if $(filter container,$(RUNTIME)),docker-start) ## The whole federation on this machine, a real FL job, results printed (RUNTIME=container: in containers)
	@RUNTIME=$(RUNTIME) scripts/demo.sh

demo-stop: ## Stop the demo federation started by 'make demo'
	@$(if $(filter container,$(RUNTIME)),scripts/bootstrap.sh container,scripts/controller.sh >/dev/null)
	@RUNTIME=$(RUNTIME) scripts/demo.sh stop

test: ## The whole test suite, layer by layer, with timings
	@scripts/test.sh

lint: bootstrap ## ruff, yamllint, ansible-lint
	@scripts/lint.sh

sanity: bootstrap ## ansible-test sanity on the collection
	@scripts/sanity.sh

build: bootstrap ## Build the collection tarball and check that it installs
	@scripts/build.sh

galaxy-importer: bootstrap ## Galaxy's import checks (galaxy-importer) on the built tarball
	@scripts/galaxy-importer.sh

ee: bootstrap ## Execution environment build context (ansible-builder create) in dist/ee, checked
	@scripts/ee.sh dist/ee

docs: bootstrap ## HTML documentation site (antsibull-docs, Sphinx) in dist/docs/html
	@scripts/docs.sh

unit: bootstrap ## Unit tests (pytest tests/unit)
	@scripts/pytest.sh tests/unit $(PYTEST_ARGS)

functional: bootstrap wheelhouse ## Tests against real NVFlare, dashboard and moto processes
	@scripts/pytest.sh tests/functional $(PYTEST_ARGS)

molecule: bootstrap ## Molecule scenarios on Docker systemd hosts (SCENARIO=name for one)
	@scripts/molecule.sh $(SCENARIO)

wheelhouse: ## Download every package the managed hosts may install (once, cached; no root)
	@scripts/controller.sh >/dev/null
	@scripts/wheelhouse.sh all

image: bootstrap docker-start ## Build the systemd base image for test hosts
	@scripts/base-image.sh

docker-start: ## Start dockerd for test hosts and the container demo
	@scripts/docker.sh start

docker-stop: ## Stop dockerd if this project started it
	@scripts/docker.sh stop

clean: ## Remove build outputs (keeps .venv and the caches)
	rm -rf dist tests/output
