# The two commands of the README, and a few more. CMake does the building.
#   make run    install what is missing, build, run the example workflow
#   make test   install what is missing, build, run every test
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps build build-asan run test test-fast bench bazel clean install

all: build

deps:
	@bash tools/bootstrap.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DAO_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

run: build
	@bash tools/run-example.sh $(BUILD)

# Bazel first (it leaves no server behind), then the release build, then every
# test under ASan+UBSan; ctest closes the output.
test: deps
	@bash tools/test-all.sh

bench: build
	@bash bench/run-all.sh $(BUILD)

bazel: deps
	@bash bazel/build-and-test.sh

install: build
	@cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) var
