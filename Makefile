# blindpost: developer and CI entry points.
#
#   make test         go vet, then the whole suite (this is what .ci/run runs)
#   make lint         gofmt, go vet, staticcheck
#   make bench        benchmarks only
#   make fuzz-smoke   every fuzz target for $(FUZZTIME)
#   make build        bin/blindpost
#   make demo         the whole journey on embedded defaults
#
# PKG narrows test, vet, lint, bench and build: make test PKG=./envelope/...

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Go 1.26 lives at /usr/local/go on the project's machines; a fresh shell
# (CI, cron, sudo) may not have it on PATH.
ifeq ($(shell command -v go 2>/dev/null),)
export PATH := /usr/local/go/bin:$(PATH)
endif

GO                  ?= go
GOFMT               ?= gofmt
PKG                 ?= ./...
# -count=1: never report a cached result; -timeout: a hung test fails its
# package with a goroutine dump instead of eating CI's budget. No -v, so the
# closing "ok"/"FAIL" line of each package stays readable.
TESTFLAGS           ?= -count=1 -timeout 15m
BENCHFLAGS          ?=
FUZZTIME            ?= 10s
STATICCHECK_VERSION ?= v0.8.2
BIN                 ?= bin

.PHONY: help test services vet lint fmt-check staticcheck bench fuzz-smoke build demo clean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

test: services vet
	$(GO) test $(TESTFLAGS) $(PKG)

# Starts (or checks) the external services the tests need. Today: none.
services:
	@bash scripts/services.sh

vet:
	@$(GO) version
	$(GO) vet $(PKG)

lint: fmt-check vet staticcheck

# Fails listing the files gofmt would change (testdata/ is not Go source).
fmt-check:
	@out="$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -print0 \
		| xargs -0 -r $(GOFMT) -l)"; \
	if [ -n "$$out" ]; then echo "gofmt -w needed on:"; echo "$$out"; exit 1; fi

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKG)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(BENCHFLAGS) $(PKG)

fuzz-smoke:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz-smoke.sh

build:
	$(GO) build $(PKG)
	$(GO) build -trimpath -o $(BIN)/blindpost ./cmd/blindpost

demo:
	$(GO) run ./cmd/blindpost demo

clean:
	rm -rf $(BIN)
