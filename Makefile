# federated.nvflare: the two commands of the README, and targets for working on one part.
# Every target installs what it needs (see scripts/bootstrap.sh); re-running skips what is
# already in place.

SHELL := /bin/bash
SCENARIO ?=
RUNTIME ?=
PYTEST_ARGS ?=

.PHONY: help bootstrap demo demo-stop test lint sanity build galaxy-importer ee docs unit functional molecule \
        wheelhouse image docker-start docker-stop clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

bootstrap: ## Install apt packages, the .venv and the collections
	@scripts/bootstrap.sh

demo: bootstrap wheelhouse $(if $(filter container,$(RUNTIME)),docker-start) ## The whole federation on this machine, a real FL job, results printed (RUNTIME=container: in containers)
	@RUNTIME=$(RUNTIME) scripts/demo.sh

demo-stop: bootstrap ## Stop the demo federation started by 'make demo'
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

wheelhouse: bootstrap ## Download every package the managed hosts need (once, cached)
	@scripts/wheelhouse.sh

image: bootstrap docker-start ## Build the systemd base image for test hosts
	@scripts/base-image.sh

docker-start: bootstrap ## Start dockerd for test hosts
	@scripts/docker.sh start

docker-stop: ## Stop dockerd if this project started it
	@scripts/docker.sh stop

clean: ## Remove build outputs (keeps .venv and the caches)
	rm -rf dist tests/output
