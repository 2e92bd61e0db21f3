# Every target creates .venv on first use and installs the package into it.
# Re-installs only when pyproject.toml changes, so repeated runs are fast.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
EXTRAS ?= server,test

.PHONY: install serve test bench preview protos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

serve: install
	$(BIN)/augserve serve

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m pip install --quiet -e '.[server,test,bench]'
	$(BIN)/augserve bench --out bench/RESULTS.md

preview: install
	$(BIN)/augserve preview --pipeline imagenet-randaug --out preview.png

# Regenerate the gRPC stubs from the .proto (a test fails when they are stale).
protos: install
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. --pyi_out=. \
		protos/augserve/v1/augserve.proto

clean:
	rm -rf $(VENV) .venv-client build *.egg-info
