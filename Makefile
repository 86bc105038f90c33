# inferd — front end over scripts/setup.sh, CMake and ctest.
#   make run    install what is missing, build, provision models, run the service
#               (inferd serve on its embedded defaults: SQLite under ./var, port 8002)
#   make analyze ARGS="a.jpg b.jpg"   the per-image pipeline on files, JSON lines
#   make test   install what is missing, build, provision models, run every test
#               (normal build, then the same suite under ASan + UBSan)
#   make build  build/inferd          make bench   run the benchmarks in bench/
#   make bench-faces ARGS="--dir DIR"  face recognition quality on real photos
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
MODELS_DIR ?= var/models
ARGS ?=

.PHONY: all setup build build-asan models testref run analyze test test-asan bench bench-faces clean

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

models: build
	@models/provision.sh $(BUILD) $(MODELS_DIR)

testref:
	@scripts/setup.sh testref

run: models
	$(BUILD)/inferd serve --models-dir $(MODELS_DIR) $(ARGS)

analyze: models
	$(BUILD)/inferd analyze --models-dir $(MODELS_DIR) $(if $(ARGS),$(ARGS),.deps/testdata/faceapi/sample1.jpg)

test: models testref build-asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-asan

test-asan:
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS) -L 'unit|models|cli|e2e'

bench: models
	bench/models --build $(BUILD) --models-dir $(MODELS_DIR)

bench-faces: models
	bench/faces --build $(BUILD) --models-dir $(MODELS_DIR) $(ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
