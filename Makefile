# Spinal-metastasis CT services: setup, demo, tests, lint.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TRITON_VENV := .venv-triton
PY := $(VENV)/bin/python
APT_PACKAGES := dcmtk orthanc dicom3tools pixelmed-apps poppler-utils
# Images (make images): podman and buildah (runc: the runtime podman is run with), debootstrap for
# the local base image, CNI's dnsname plugin (container names in the whole-stack test's network).
IMAGE_APT_PACKAGES := podman buildah runc debootstrap golang-github-containernetworking-plugin-dnsname
# Not kubectl: Debian's kubernetes-client is 1.20 (kustomize v2), too old for k8s/ (kustomize v5).
# tests/test_k8s.py needs kubectl >= 1.27 on PATH and is skipped without it (docs/deployment.md).
STAMP := $(VENV)/.stamp
# Parallel workers of `make test` (pytest-xdist; each test file runs whole on one worker).
TEST_WORKERS ?= 2

.PHONY: setup demo test test-slow test-acceptance test-containers images apt-images lint proto clean apt

setup: $(STAMP) $(TRITON_VENV)/.stamp proto

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "note: Debian packages$$missing not installed (no root); tests that need them are skipped"; fi; fi

$(STAMP): requirements/*.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(TRITON_VENV)/.stamp: requirements/triton.txt
	test -d $(TRITON_VENV) || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q --upgrade pip
	$(TRITON_VENV)/bin/python -m pip install -q -r requirements/triton.txt
	touch $@

proto: $(STAMP)
	mkdir -p libs/spinemets/spinemets/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=libs/spinemets --pyi_out=libs/spinemets \
	  --grpc_python_out=libs/spinemets proto/spinemets/v1/*.proto
	touch libs/spinemets/spinemets/v1/__init__.py

demo: apt setup
	$(PY) -m stack demo

# The demo models' acceptance on held-out phantoms (marker acceptance: Dice, identification,
# lesion detection and typing; tens of minutes on two cores) runs apart: make test-acceptance.
test: apt setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not acceptance and not containers and not slow"

# Heavy checks kept out of the 15-minute default run; CI runs them after `make test`.
test-slow: apt setup
	$(PY) -m pytest -q -m "slow and not acceptance and not containers"

test-acceptance: apt setup
	$(PY) -m pytest -q -m acceptance

# Container images (containers/, docs/deployment.md): the local Debian base (cached), then
# every image, tagged with the project version. A machine with a running Docker engine and no
# podman uses docker; a docker client without an engine (`docker info` fails) does not count.
apt-images:
	@if ! command -v podman >/dev/null && docker info >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory apt APT_PACKAGES=debootstrap; \
	else $(MAKE) --no-print-directory apt APT_PACKAGES="$(IMAGE_APT_PACKAGES)"; fi

images: apt-images
	containers/build.sh

# The whole stack in containers (tests/test_containers.py): apart from `make test`, since a cold
# image build takes minutes; CI runs both (.ci/run).
test-containers: apt setup images
	$(PY) -m pytest -q -m containers

MYPY_PATH := libs/spinemets:services/listener:services/segmenter:services/registrar:services/risk:tools
MYPY_PACKAGES := spinemets listener segmenter registrar risk phantom stack demomodel nnunet_tools

lint: setup
	$(VENV)/bin/ruff check .
	MYPYPATH=$(MYPY_PATH) $(VENV)/bin/mypy $(addprefix -p ,$(MYPY_PACKAGES))

clean:
	rm -rf .demo .work build .pytest_cache .mypy_cache .ruff_cache
