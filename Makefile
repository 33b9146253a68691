# The two commands (see README): `make run` and `make test`. Everything else is a
# convenience around CMake. Both install what they lack through scripts/setup.sh.
BUILD   ?= build
JOBS    ?= $(shell nproc)
ARGS    ?=
CMAKE_FLAGS ?=

.PHONY: all build run test fuzz bench format clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Builds the server alone (not the sanitizer variant or the tests) and starts it on
# the embedded default: ws://localhost:8080.
run:
	@scripts/setup.sh run
	@echo "building wshub (log: $(BUILD)/run-build.log) ..."
	@mkdir -p $(BUILD)
	@{ cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) && \
	   cmake --build $(BUILD) -j $(JOBS) --target wshub wshub-cli; } >$(BUILD)/run-build.log 2>&1 || \
	   { tail -n 40 $(BUILD)/run-build.log; echo "build failed: see $(BUILD)/run-build.log"; exit 1; }
	@exec $(BUILD)/wshub $(ARGS)

# Installs test dependencies, builds both variants, runs every test once.
test:
	@scripts/setup.sh test
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(ARGS)

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tools/*.c' 'tools/*.h' 'include/*.h')

clean:
	rm -rf $(BUILD)

# Runs every fuzz target for FUZZ_SECONDS each (default 300).
FUZZ_SECONDS ?= 300
fuzz:
	@scripts/setup.sh test
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target fuzz_targets
	for f in $(BUILD)/fuzz/fuzz_*; do n=$$(basename $$f); \
	  tests/fuzz/run.sh $$f tests/fuzz/corpus/$${n#fuzz_} $(FUZZ_SECONDS) || exit 1; done

# Measures wshub against the reference peers and updates docs/benchmarks.md (minutes).
bench:
	@scripts/setup.sh run
	bench/compare $(ARGS)
