# Lockstep: build, test, generate. Everything runs with Go alone; the tools
# (controller-gen) come from the Go module proxy at pinned versions.

GO              ?= go
BIN             ?= bin
CONTROLLER_GEN  ?= $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
IMAGE_REGISTRY  ?= ghcr.io/lockstep-sched
IMAGE_TAG       ?= latest
IMAGE_OUT       ?= $(BIN)/oci
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
# Empty: hack/image's default, distroless static:nonroot pinned by digest.
IMAGE_BASE      ?=
INTEGRATION_TIMEOUT ?= 30m
# Every test runs under the race detector: the scheduler calls the plugin
# from several goroutines at once. RACE= turns it off for a quick local run.
RACE            ?= -race
# How much make test fuzzes each target beyond its seed corpus: a count of
# executions, not a duration. Before Go 1.27 a duration races the fuzz
# coordinator's own deadline and fails now and then with a bare "context
# deadline exceeded" and no failing input (golang/go#75804).
FUZZTIME        ?= 20000x
SANDBOX_ARGS    ?=
BENCH_ARGS      ?=
# scheduler-plugins' kube-scheduler with Coscheduling, the peer make bench
# measures Lockstep against; built from its own module (hack/coscheduling)
# so that its Kubernetes version never touches ours.
COSCHEDULING_BIN ?= $(BIN)/coscheduling-scheduler

.PHONY: all build test test-unit test-integration fuzz lint manifests generate verify-generated image image-push docker-image clean sandbox bench coscheduling

all: build

## build: compile the binaries into bin/
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## test: everything CI runs
test: lint verify-generated test-unit fuzz test-integration

## test-unit: fast tests, no control plane
test-unit:
	$(GO) test $(RACE) ./apis/... ./pkg/... ./manifests/... ./examples/...

## test-integration: the scheduler, controller, sandbox and a tiny run of the
## benchmark against a real kube-apiserver and etcd started in-process
test-integration:
	$(GO) test $(RACE) -count=1 -timeout $(INTEGRATION_TIMEOUT) ./test/...

## fuzz: each fuzz target for FUZZTIME executions (the unit tests run their seed
## corpora): the plugin args decoder, PodGroup fields and annotations,
## NodeResourceTopology parsing, the planner. A failing input is written to
## the package's testdata/fuzz; commit it as a regression case.
FUZZ_TARGETS = ./apis/config:FuzzDecodeGangArgs ./pkg/podgroup:FuzzPodGroup ./pkg/topology:FuzzParseNRT ./pkg/placement:FuzzPlanGang
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "$(GO) test -run=^$$ -fuzz=^$$name\$$ -fuzztime=$(FUZZTIME) $$pkg"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

## lint: formatting and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## generate: deepcopy for apis/config
generate:
	$(CONTROLLER_GEN) object:headerFile=/dev/null paths=./apis/...

## manifests: the PodGroup and NodeResourceTopology CRDs, generated from the
## upstream Go types; the PodGroup CRD gets a Waiting column (hack/crdcolumn);
## the Helm chart's identities and CRD are written from manifests/ (hack/chartgen).
## The NodeResourceTopology CRD is for embedded control planes only (sandbox,
## tests): on a cluster the node agent that publishes the objects installs
## it, so kustomization.yaml leaves it out.
manifests:
	$(CONTROLLER_GEN) crd paths=sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1 output:crd:dir=manifests/crds
	rm -f manifests/crds/scheduling.x-k8s.io_elasticquotas.yaml
	$(GO) run ./hack/crdcolumn manifests/crds/scheduling.x-k8s.io_podgroups.yaml
	$(GO) run ./hack/chartgen
	$(CONTROLLER_GEN) crd paths=github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2 output:crd:dir=manifests/crds

## verify-generated: fail when generated files are stale
verify-generated: generate manifests
	@git diff --exit-code -- apis manifests/crds charts || (echo "generated files are stale: run make generate manifests"; exit 1)
	@test -z "$$(git status --porcelain -- charts)" || (echo "generated chart files are not committed: run make manifests"; git status --short -- charts; exit 1)

## sandbox: run Lockstep on an embedded control plane with simulated nodes
## and the workloads in examples/; e.g. make sandbox SANDBOX_ARGS="--nodes 8 --keep"
sandbox:
	$(GO) run ./cmd/lockstep-sandbox $(SANDBOX_ARGS)

## bench: Lockstep against the default kube-scheduler and scheduler-plugins'
## Coscheduling on the same workloads and embedded control plane; tables on
## stdout, every figure in bench.json. Takes minutes on two cores (the first
## build of Coscheduling's Kubernetes tree takes about ten more); e.g.
## make bench BENCH_ARGS="--scenarios competing --modes pre --out /tmp/b.json"
## (make test runs it at a tiny scale, without Coscheduling: test/bench)
## Every scheduler runs as a child process of its own, as it would on a
## cluster, so that none shares the embedded apiserver's process.
bench: coscheduling
	$(GO) build -o $(BIN)/lockstep-scheduler ./cmd/lockstep-scheduler
	$(GO) run ./cmd/lockstep-bench --scheduler-binary $(BIN)/lockstep-scheduler --coscheduling-binary $(COSCHEDULING_BIN) $(BENCH_ARGS)

## coscheduling: build scheduler-plugins' scheduler for make bench
coscheduling:
	cd hack/coscheduling && $(GO) build -o $(abspath $(COSCHEDULING_BIN)) sigs.k8s.io/scheduler-plugins/cmd/scheduler

## image: the scheduler's and controller's images, amd64 and arm64, built
## with Go alone (hack/image, go-containerregistry: no Docker engine) on
## distroless static:nonroot pinned by digest, into the OCI image layout
## IMAGE_OUT; IMAGE_BASE=empty builds them on no base (offline).
## image-push: the same, pushed to IMAGE_REGISTRY/<binary>:IMAGE_TAG.
## docker-image: the same images with a Docker engine (Dockerfile).
image:
	$(GO) run ./hack/image --out $(IMAGE_OUT) --tag $(IMAGE_TAG) --platforms $(IMAGE_PLATFORMS) $(if $(IMAGE_BASE),--base $(IMAGE_BASE))

image-push:
	$(GO) run ./hack/image --out $(IMAGE_OUT) --tag $(IMAGE_TAG) --platforms $(IMAGE_PLATFORMS) $(if $(IMAGE_BASE),--base $(IMAGE_BASE)) --push $(IMAGE_REGISTRY)

docker-image:
	docker build --build-arg BINARY=lockstep-scheduler -t $(IMAGE_REGISTRY)/lockstep-scheduler:$(IMAGE_TAG) .
	docker build --build-arg BINARY=lockstep-controller -t $(IMAGE_REGISTRY)/lockstep-controller:$(IMAGE_TAG) .

clean:
	rm -rf $(BIN)
