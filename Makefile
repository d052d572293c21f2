# A thin front for CMake. The two commands that set up a fresh Debian machine:
#   make demo   install what is needed, build, train the house-price MLP on real data with the magna command
#   make test   install what is needed, build, run every test (the interoperability tests' Python packages go
#               into .venv-interop first), then again under sanitizers (CI runs this)
#   make gpu-bundle here: what the GPU machine needs (libraries' .debs, data) into .gpu-bundle, which travels
#   make gpu-check  on a GPU machine: the CUDA build and its GPU tests (fails, saying why, without a GPU)
BUILD ?= build
JOBS ?= 2

.PHONY: all deps build venv test demo bench sanitize gpu-bundle gpu-check clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# Python's safetensors, numpy and tensorboard from PyPI for tests/interop (once; ctest's fixture calls it too).
venv: deps
	@scripts/interop-venv.sh

# The optimised build's suite, then the same tests under ASan + UBSan (DESIGN §6). The GPU bundle first, where a
# Debian mirror answers (~2 s; test_gpu_bundle builds the GPU configuration from it, ~30 s; it skips without one).
test: build venv
	@scripts/gpu-bundle.sh --if-possible
	@cd $(BUILD) && OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j1
	@$(MAKE) --no-print-directory sanitize

# models/housing-mlp.ini: 13 -> 64 -> 1 on Boston housing, 200 epochs; the last line is key=value results.
demo: build
	@$(BUILD)/magna train models/housing-mlp.ini

# Benchmarks against PyTorch (Debian's python3-torch; pip's torch too when .venv has it). Never run two at once.
bench: build
	@scripts/install-deps.sh bench
	@bench/run_kernels.sh
	@bench/run_tabular.sh 3
	@bench/fmnist.sh
	@bench/run_dist.sh

# ASan + UBSan build of the fast tests (DESIGN §6). Without nvcc's build of the CUDA backend: the same sources run
# sanitized through the emulator (magna_emu), and the GPU-only tests would only skip here.
sanitize: deps venv
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAGNA_SANITIZE=ON -DMAGNA_WITH_CUDA=OFF >/dev/null
	@cmake --build $(BUILD)-asan -j$(JOBS)
	@cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j1

# The libraries' .debs (apt-get download) and the GPU checks' data into .gpu-bundle/, the git-ignored folder that
# travels to GPU machines reaching no registry; gpu-check unpacks and uses it there (README, "GPU").
gpu-bundle: deps
	@scripts/gpu-bundle.sh

# On a machine with an NVIDIA GPU: build with CUDA (in build-gpu), run the GPU tests and memcheck over them.
# Without a GPU it says so and exits 1 (README, "GPU"). No deps: the GPU machines reach no package registry.
gpu-check:
	@scripts/gpu-check.sh

clean:
	rm -rf $(BUILD) $(BUILD)-asan build-gpu .venv-interop
