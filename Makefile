# openstack-autoscaler. `make demo` and `make test` are all a newcomer needs (see README.md).
SHELL := /bin/bash
GO ?= go
PKGS := ./...

.PHONY: demo down test test-unit e2e soak bench lint deps generate world-up world-status images chart-docs

## demo: bring up the local world (OpenStack + Kubernetes) and show the product working in it
demo:
	e2e/world/world.sh up
	e2e/demo.sh

## down: stop everything the world and the demo started (by recorded PID)
down:
	e2e/world/world.sh down

## test: what CI runs: lint, unit tests, then the end-to-end suite in the local world
test: lint test-unit e2e

## test-unit: unit tests (no world needed)
test-unit: deps
	OSA_REQUIRE_TOOLS=1 $(GO) test -race -count=1 $(PKGS)

## soak: the failover soak at length (two replicas, Lease moves, kills, faults; 170 cycles per
## group kind, at least 500 in all; hours): OSA_SOAK_CYCLES and OSA_SOAK_MINUTES override
soak:
	OSA_SOAK_CYCLES=$${OSA_SOAK_CYCLES:-170} OSA_SOAK_MINUTES=$${OSA_SOAK_MINUTES:-900} e2e/run.sh -v -timeout 16h -run 'TestFailoverSoak'


## e2e: end-to-end tests in the local world (started, and stopped afterwards, if not running)
e2e:
	e2e/run.sh -v

## bench: Go benchmarks (results and commands are recorded in docs/benchmarks.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## lint: no build output tracked, gofmt, go vet (with and without the e2e build tag), the chart's
## README current, and the committed BPF object what its source compiles to (Debian 12's clang 14
## and libbpf-dev). A build output is a tracked ELF file (executable or object; the BPF object is
## the one committed on purpose) or any tracked file over 5 MB; only 4 bytes of each file are read.
lint: deps
	@bad=0; while IFS=' ' read -r -d '' size f; do \
	  LC_ALL=C read -r -N4 magic < "$$f" || true; \
	  if [ "$$magic" = $$'\177ELF' ] && [ "$$f" != adapter/bpfcount/counter_bpfel.o ]; then why="an ELF executable or object"; \
	  elif [ "$$size" -gt 5242880 ]; then why="$$size bytes, over 5 MB"; else continue; fi; \
	  printf '%s is tracked but is a build output (%s): run git rm --cached %q (build outputs go in _output/, which .gitignore ignores)\n' "$$f" "$$why" "$$f"; bad=1; \
	done < <(git ls-files -z | xargs -0 -r stat --printf '%s %n\0' -- 2>/dev/null); exit $$bad
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags e2e ./e2e/...
	@hd=$$(e2e/world/helm-docs.sh) && \
	  if ! $$hd --chart-search-root charts --dry-run --log-level warning 2>/dev/null | diff -u charts/openstack-autoscaler/README.md - ; then \
	  echo "charts/openstack-autoscaler/README.md is not what values.yaml says: run make chart-docs"; exit 1; fi
	$(GO) generate ./adapter/bpfcount
	@git diff --quiet -- adapter/bpfcount/counter_bpfel.o adapter/bpfcount/counter_bpfel.go || { git diff --stat -- adapter/bpfcount; \
	  echo "adapter/bpfcount: the committed BPF object is not what counter.bpf.c compiles to: commit the regenerated files"; exit 1; }

## chart-docs: write charts/openstack-autoscaler/README.md from values.yaml (helm-docs)
chart-docs:
	$$(e2e/world/helm-docs.sh) --chart-search-root charts --log-level warning

## deps: Debian packages the unit tests need (protoc checks the generated gRPC code; nft and ip
## make the network namespaces of the connection-counting tests; clang and libbpf-dev compile
## the BPF counter, which lint checks against the committed object; gcc for the race detector)
deps:
	@for p in protobuf-compiler libprotobuf-dev nftables iproute2 clang libbpf-dev gcc libc6-dev; do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; fi

## generate: regenerate the gRPC code from cloudprovider/externalgrpc/externalgrpc.proto
generate: deps
	$(GO) generate ./cloudprovider/externalgrpc

## images: the product's images without a Docker engine (static binaries packed by cmd/build-images
## into _output/images: an OCI layout and one tarball per image), named as the Helm chart's defaults
IMAGE_REGISTRY ?= ghcr.io/openstack-autoscaler
IMAGE_TAG ?= $(shell awk '/^appVersion:/{gsub(/"/,"",$$2); print $$2}' charts/openstack-autoscaler/Chart.yaml)
IMAGE_BINARIES := openstack-provider connection-agent connection-metrics-adapter
images:
	@for b in $(IMAGE_BINARIES); do echo "building $$b (static)"; \
	  CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$(IMAGE_TAG)" -o _output/images/bin/$$b ./cmd/$$b || exit 1; done
	cd cmd/build-images && $(GO) run . --bin-dir ../../_output/images/bin --out ../../_output/images \
	  --registry $(IMAGE_REGISTRY) --tag $(IMAGE_TAG) $(IMAGE_BINARIES)

world-up:
	e2e/world/world.sh up

world-status:
	e2e/world/world.sh status
