# inferd — front end over scripts/setup.sh, CMake and ctest.
#   make run    install what is missing, build, provision models, run the service
#               (inferd serve on its embedded defaults: SQLite under ./var, port 8002)
#   make analyze ARGS="a.jpg b.jpg"   the per-image pipeline on files, JSON lines
#   make test   install what is missing, build, provision models, run every test
#               (normal build; the same suite under ASan + UBSan; the threaded
#               tests under TSan; each fuzz target for FUZZ_TEST_SECONDS)
#   make fuzz   each libFuzzer target in fuzz/ for FUZZ_SECONDS (default 600)
#   make build  build/inferd          make bench   run the benchmarks in bench/
#   make bench-faces ARGS="--dir DIR"  face recognition quality on real photos
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_TEST_SECONDS ?= 20
# The tests that run threads of their own (index, search, worker, sched, events, store) and the
# API's connection and event-stream threads (e2e.02, e2e.17; e2e.16 is left out: its
# 1 s job deadline is for an uninstrumented photo): run again under ThreadSanitizer.
TSAN_TESTS ?= unit\.test_(index|search|worker|sched|events|store|fetch)$$|e2e\.(02|17)-
JOBS ?= $(shell nproc)
MODELS_DIR ?= var/models
ARGS ?=

.PHONY: all setup build build-asan build-tsan build-fuzz models testref testbrowser run index analyze test test-asan \
	test-tsan test-fuzz fuzz bench bench-faces clean

all: build

setup:
	@scripts/setup.sh all

$(BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

build-asan: setup
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DINFERD_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

build-tsan: setup
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFERD_TSAN=ON >/dev/null
	cmake --build $(TSAN_BUILD) -j $(JOBS)

build-fuzz: setup
	CC=clang-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFERD_FUZZ=ON \
		-DINFERD_FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

models: build
	@models/provision.sh $(BUILD) $(MODELS_DIR)

testref:
	@scripts/setup.sh testref

testbrowser:
	@scripts/setup.sh browser
	@scripts/setup.sh openapi
	@scripts/setup.sh promtool

# `make run` reads path jobs under MEDIA_ROOT (this clone by default, so that
# `make index ARGS=.deps/testdata` works at once); ARGS="--media-root DIR" wins.
MEDIA_ROOT ?= $(CURDIR)
run: models
	$(BUILD)/inferd serve --models-dir $(MODELS_DIR) --media-root $(MEDIA_ROOT) $(ARGS)

# Submits the photos under ARGS (folders) to the inferd `make run` started.
index: build
	$(BUILD)/inferd index $(if $(ARGS),$(ARGS),.deps/testdata)

analyze: models
	$(BUILD)/inferd analyze --models-dir $(MODELS_DIR) $(if $(ARGS),$(ARGS),.deps/testdata/faceapi/sample1.jpg)

test: models testref testbrowser build-asan build-tsan build-fuzz
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory test-fuzz

test-asan:
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS) -L 'unit|models|cli|e2e'

test-tsan:
	cd $(TSAN_BUILD) && TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp" \
		ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TESTS)'

test-fuzz:
	cd $(FUZZ_BUILD) && INFERD_FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) ctest --output-on-failure -j $(JOBS) -L fuzz

# Long runs: what they find is saved under $(FUZZ_BUILD)/fuzz-work/NAME/artifacts.
fuzz: build-fuzz
	cd $(FUZZ_BUILD) && INFERD_FUZZ_SECONDS=$(FUZZ_SECONDS) ctest --output-on-failure -j $(JOBS) \
		-L fuzz --timeout $$(( $(FUZZ_SECONDS) + 300 ))

bench: models
	bench/models --build $(BUILD) --models-dir $(MODELS_DIR)

bench-faces: models
	bench/faces --build $(BUILD) --models-dir $(MODELS_DIR) $(ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
