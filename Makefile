# roslan: the two commands a newcomer needs are `make demo` and `make test`.
# Everything a fresh Debian machine lacks is installed here, not in anyone's shell history.

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := iproute2 iputils-ping iputils-arping procps etcd-server openssl tcpdump python3 python3-venv containernetworking-plugins valgrind cyclonedds-tools podman runc containerd busybox-static debootstrap
ROOT := $(shell id -u)
# Release binaries are fully static (no dynamic loader at exec: ~0.3 ms less per CNI call, and they run
# in a minimal image and inside Multus' chroot). The explicit --target keeps build scripts and proc
# macros, which cannot be static, out of the static flags.
TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
RELEASE_DIR := target/$(TARGET)/release
ifeq ($(ROOT),0)
ROOT_FEATURES := --features roslan-tests/root-tests
endif

VENV := .venv
PYTHON := $(VENV)/bin/python

# The real peers' cache (make peers), outside the clone so that clones share it; the tests read the same
# variable. Root's is machine-wide, anyone else's in their home.
ifeq ($(ROOT),0)
ROSLAN_PEERS_DIR ?= /var/cache/roslan/peers
else
ROSLAN_PEERS_DIR ?= $(HOME)/.cache/roslan/peers
endif
export ROSLAN_PEERS_DIR

FUZZ_TARGETS := config cni_args environment store_record delegate_result
FUZZ_RUNS ?= 20000
# store_record does file I/O per input: the smoke run gives it a tenth; the long run gives it the full count.
FUZZ_SLOW_DIVISOR ?= 10

.PHONY: all build release image ros-image pause-image peers test e2e stress fuzz fuzz-smoke conformance demo bench deps venv lint clean clean-netns

all: build

build:
	$(CARGO) build --workspace --all-targets

# The plugin is built alone first: in one build with roslan-install, cargo would unify tokio's features with
# the Kubernetes client's (net, time, signal) and link their drivers into every CNI call (+12 KB measured).
release:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(TARGET) -p roslan
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --workspace --exclude roslan --release --target $(TARGET)

# Images, built offline (install/image/README.md). The version is the workspace's; every file and the creation
# time of roslan's image carry the last commit's time, so one commit gives the same bytes on every build.
VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$$/\1/p' Cargo.toml)
IMAGE_DIR := target/image
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# The sandbox image kubeadm 1.34 configures (cmd/kubeadm/app/constants: PauseVersion 3.10.1); kubelet 1.34
# itself no longer names one, the CRI's sandbox_image does.
PAUSE_IMAGE ?= registry.k8s.io/pause:3.10.1
# The ROS 2 workload image's cache, outside the clone like the test peers; keyed by its inputs.
ROSLAN_IMAGES_DIR ?= /var/cache/roslan/images

## image: roslan's image (FROM scratch, podman, nothing pulled) from the static release binaries, as
## target/image/roslan-<version>.oci.tar, tagged as manifests/daemonset.yaml names it.
image: deps release
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) install/image/roslan.sh $(RELEASE_DIR) $(IMAGE_DIR)/roslan-$(VERSION).oci.tar

## ros-image: the ROS 2 workload image (Debian bookworm minbase, the pinned ROS 2 and Cyclone wheels, the
## example scripts) in $(ROSLAN_IMAGES_DIR); a second run with the same inputs builds nothing.
ros-image: deps
	@if [ "$(ROOT)" != 0 ]; then echo "make ros-image needs root (debootstrap, chroot)"; exit 1; fi
	tests/images/ros2.sh $(ROSLAN_IMAGES_DIR)

## pause-image: the pod sandbox image, busybox-static only, as target/image/pause-<tag>.oci.tar.
pause-image: deps
	@mkdir -p $(IMAGE_DIR)
	python3 tests/runtimes/pause_image.py $(IMAGE_DIR)/pause-$(lastword $(subst :, ,$(PAUSE_IMAGE))).oci.tar $(PAUSE_IMAGE)

## deps: install the OS packages the tests and benchmarks use (as root, only what is missing).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$(ROOT)" != 0 ]; then echo "missing packages:$$missing (run make as root to install them)"; exit 1; fi; \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

## venv: Python packages the tests use (manifest validation, DDS peers, ROS 2 nodes, CRI client, charts), pinned.
venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements.txt tests/requirements-ros.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

## peers: the real peers (Multus 3.9 and 4, whereabouts, the upstream plugins, Kubernetes 1.34, crictl), pinned
## in tests/peers/ and built from the Go module proxy into a cache outside the clone: ROSLAN_PEERS_DIR,
## default /var/cache/roslan/peers (~/.cache/roslan/peers when not root). Builds only what is missing (a
## second run does nothing); see tests/peers/README.md.
peers:
	tests/peers/build.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(ROOT_FEATURES) -- -D warnings

## test: the whole suite. Root-only tests run when invoked as root and show as ignored otherwise. What the
## tests run is built first: the real peers (make peers, cached outside the clone) and, as root, the images
## the root-only tests load (roslan's, the ROS 2 workload's, the pause image of the e2e's node).
ifeq ($(ROOT),0)
ROOT_PREREQUISITES := image ros-image pause-image
endif
test: deps venv peers lint clean-netns $(ROOT_PREREQUISITES)
	$(CARGO) build --workspace --all-targets
	$(CARGO) build -p roslan --features fault-injection --target-dir target/faults
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --target $(TARGET) -p roslan -p roslan-install
	$(CARGO) test --workspace --no-fail-fast $(ROOT_FEATURES)
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory clean-netns

## e2e: a Kubernetes node of real parts in namespaces of its own, shaped like MicroK8s with its multus addon
## (Multus 3.9 thin), runs `kubectl apply -k manifests/`, the seed's five examples with roslan and with the
## reference plugins, the lifecycle, the doctor and the uninstall (docs/e2e.md; about 6 minutes). `make test`
## runs it too, with the rest of the suite.
e2e: deps venv peers image ros-image pause-image
	@if [ "$(ROOT)" != 0 ]; then echo "make e2e needs root (namespaces, containerd, kubelet)"; exit 1; fi
	$(CARGO) test -p roslan-tests $(ROOT_FEATURES) --test e2e

## fuzz-smoke: every fuzz target for a bounded number of inputs (part of make test).
## fuzz: the long run, at least a million inputs per target (FUZZ_RUNS=1000000).
fuzz-smoke:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --version 0.13.2 --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p tests/fuzz/corpus/$$t; \
		runs=$(FUZZ_RUNS); [ $$t = store_record ] && runs=$$(( $(FUZZ_RUNS) / $(FUZZ_SLOW_DIVISOR) )); \
		echo "fuzz $$t: $$runs inputs"; \
		$(CARGO) +nightly fuzz run --fuzz-dir tests/fuzz $$t tests/fuzz/corpus/$$t tests/fuzz/seeds/$$t -- \
			-runs=$$runs -max_len=8192 -print_final_stats=1 2>&1 | grep -E '^(Done|stat::number_of_executed_units|==|thread|SUMMARY)|panicked' ; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
fuzz:
	$(MAKE) fuzz-smoke FUZZ_RUNS=1000000 FUZZ_SLOW_DIVISOR=1

## stress: the long storm (randomized ADD/DEL/CHECK with kills) on top of the normal build.
STORM_OPS ?= 10000
stress: deps
	@if [ "$(ROOT)" != 0 ]; then echo "make stress needs root (it creates network namespaces)"; exit 1; fi
	$(CARGO) build --workspace --all-targets
	$(CARGO) build -p roslan --features fault-injection --target-dir target/faults
	ROSLAN_STORM_OPS=$(STORM_OPS) $(CARGO) test -p roslan-tests $(ROOT_FEATURES) --test storm -- --nocapture
	@$(MAKE) --no-print-directory clean-netns

## conformance: score roslan and the reference plugins (the upstream release from make peers, and
## Debian's) with cni-conformance; refreshes the scorecards in docs/conformance.md. Each run is
## marker:configuration:plugin.
UPSTREAM_PLUGINS = $(shell python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["plugins"]["dir"] + "/bin")' $(ROSLAN_PEERS_DIR)/manifest.json 2>/dev/null)
CONFORMANCE_RUNS = roslan:roslan:target/debug/roslan \
	reference-upstream:reference:$(UPSTREAM_PLUGINS)/macvlan \
	reference:reference:/usr/lib/cni/macvlan \
	reference-multicast-upstream:reference-multicast:$(UPSTREAM_PLUGINS)/macvlan \
	reference-multicast:reference-multicast:/usr/lib/cni/macvlan
conformance: deps venv peers
	@if [ "$(ROOT)" != 0 ]; then echo "make conformance needs root (it creates network namespaces)"; exit 1; fi
	$(CARGO) build --workspace --all-targets
	@for run in $(CONFORMANCE_RUNS); do \
		marker=$${run%%:*}; rest=$${run#*:}; config=$${rest%%:*}; plugin=$${rest#*:}; \
		target/debug/cni-conformance --plugin $$plugin --config tests/conformance/$$config.json --markdown 2>/dev/null \
			| $(PYTHON) tests/conformance/splice.py docs/conformance.md scorecard-$$marker || exit 1; \
		echo "scored $$marker"; \
	done

## demo: two dual-homed pods on a throwaway LAN, with roslan and with the reference plugins: multicast, then
## a real ROS 2 talker and listener (the examples' scripts, rclpy on Fast DDS from the venv).
demo: deps release venv
	@if [ "$(ROOT)" != 0 ]; then echo "make demo needs root (it creates network namespaces)"; exit 1; fi
	tests/demo/demo.sh $(RELEASE_DIR)

## bench: roslan and the reference plugins timed, and their instructions counted under callgrind, in the same
## run; writes docs/benchmarks.md, the raw
## numbers in docs/benchmarks.json and the ADD latency chart docs/benchmarks-add-latency.png.
bench: deps release venv peers
	@if [ "$(ROOT)" != 0 ]; then echo "make bench needs root (it creates network namespaces)"; exit 1; fi
	$(RELEASE_DIR)/roslan-bench --bin-dir $(RELEASE_DIR) --out docs/benchmarks.md
	$(PYTHON) tests/bench/chart.py docs/benchmarks.json docs/benchmarks-add-latency.png

## clean-netns: remove namespaces left by killed test runs (only ours, only of dead processes).
clean-netns:
	@for ns in $$(ip netns list 2>/dev/null | awk '{print $$1}' | grep -E '^(rlt|rl-demo)' || true); do \
		pid=$${ns#rlt}; pid=$${pid%%x*}; \
		case "$$ns" in rl-demo*) ip netns del "$$ns";; *) [ -d /proc/$$((16#$$pid)) ] 2>/dev/null || ip netns del "$$ns";; esac; \
	done

clean:
	$(CARGO) clean
