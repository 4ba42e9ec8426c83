# segloss front door.
#   make demo    build libsegloss.so and run the worked example from C, C++ and Python
#   make test    every test: Swift, C/C++ consumers, exported symbols, Python (+ torch if installed)
#   make bench   the speed benchmark (bench/README in README.md)
SWIFT   ?= swift
PYTHON  ?= python3
CC      ?= cc
CXX     ?= c++
LIBDIR  := $(CURDIR)/.build/release
LIB     := $(LIBDIR)/libsegloss.so
OUT     := $(CURDIR)/.build/consumers
STRICT  := -Wall -Wextra -Werror -pedantic -Iinclude
LINK    := -L$(LIBDIR) -lsegloss -Wl,-rpath,$(LIBDIR)
export PYTHONPATH := $(CURDIR)/bindings/python$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: all lib demo test swift-test c-test bad-input-test stress-test huge-test portability-test exports-test python-test fuzz-replay fuzz asan-test tsan-test valgrind-test mpi-test bench clean
all: demo

lib:
	$(SWIFT) build -c release --product segloss

demo: lib
	@mkdir -p $(OUT)
	$(CC) -std=c99 $(STRICT) examples/demo.c $(LINK) -o $(OUT)/demo_c
	$(OUT)/demo_c
	$(PYTHON) examples/demo.py

test: lib swift-test c-test huge-test portability-test exports-test python-test fuzz-replay bad-input-test stress-test mpi-test

swift-test:
	$(SWIFT) test

# The header compiled as C and C++ under several standards, warnings as errors; each
# program checks the worked example, every status and the memory rules through the .so.
c-test: lib
	@mkdir -p $(OUT)
	$(CC) -std=c99 $(STRICT) Tests/c/abi_test.c $(LINK) -o $(OUT)/abi_test_c99
	$(CC) -std=c11 $(STRICT) Tests/c/abi_test.c $(LINK) -o $(OUT)/abi_test_c11
	$(CXX) -std=c++11 $(STRICT) Tests/c/abi_test.cpp $(LINK) -o $(OUT)/abi_test_cxx11
	$(CXX) -std=c++17 $(STRICT) Tests/c/abi_test.cpp $(LINK) -o $(OUT)/abi_test_cxx17
	$(OUT)/abi_test_c99 && $(OUT)/abi_test_c11 && $(OUT)/abi_test_cxx11 && $(OUT)/abi_test_cxx17

# README's table "Bad input: what each status means", row by row: every flat entry point the
# row applies to, the status, and every output bitwise untouched on error. One line per row.
bad-input-test: lib
	@mkdir -p $(OUT)
	$(CC) -std=c99 $(STRICT) Tests/c/bad_input_test.c $(LINK) -lm -o $(OUT)/bad_input_test
	$(OUT)/bad_input_test

# 16 host threads calling every flat entry point at once (few to ~1M elements, in place and
# not, aligned and not) while another thread changes segloss_set_num_threads; every result
# bitwise the single-threaded one. STRESS_SECONDS (or SEGLOSS_STRESS_SECONDS) long.
STRESS_SECONDS ?= $(or $(SEGLOSS_STRESS_SECONDS),15)
stress-test: lib
	@mkdir -p $(OUT)
	$(CC) -std=c11 -O2 $(STRICT) -pthread Tests/c/stress_test.c $(LINK) -lm -o $(OUT)/stress_test
	$(OUT)/stress_test $(STRESS_SECONDS)

# A forward over 2^32 + 2^19 elements (a repeated pattern mapped, so no RAM is needed): no
# count or index inside is 32 bits.
huge-test: lib
	@mkdir -p $(OUT)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -Iinclude Tests/c/huge_test.c $(LINK) -lm -o $(OUT)/huge_test
	$(OUT)/huge_test

# One .so for every x86-64: under qemu's CPU models the C consumer must pass with the kernel
# that CPU can run (baseline on plain x86-64 with SSE2 only, avx2 on Haswell). qemu-user
# cannot emulate fork() in a threaded program, so the fork test is left out there.
QEMU_CPUS := qemu64:baseline Haswell-v4:avx2
portability-test: c-test
	@if [ "$$(uname -m)" != x86_64 ] || ! command -v qemu-x86_64 >/dev/null; then \
	  echo "portability-test: skipped (needs qemu-x86_64 on an x86-64 host)"; exit 0; fi; \
	for entry in $(QEMU_CPUS); do \
	  model=$${entry%%:*}; want=$${entry##*:}; \
	  line=$$(SEGLOSS_TEST_NO_FORK=1 qemu-x86_64 -cpu $$model $(OUT)/abi_test_c99 2>/dev/null | tail -n 1); \
	  echo "qemu -cpu $$model: $$line"; \
	  case "$$line" in *"kernel $$want): "*" passed, 0 failed") ;; \
	    *) echo "portability-test: expected kernel $$want to pass on $$model"; exit 1;; esac; \
	done

# Global Dice across data-parallel ranks: examples/mpi_global_dice.c splits a batch unevenly
# over MPI ranks, all-reduces the split-phase sums, and checks loss and gradient against one
# process on the whole batch (every segments mode, input kind, empty policy, masks), on each
# of MPI_RANKS. Skipped where mpicc or mpirun is missing (Debian: openmpi-bin libopenmpi-dev).
MPICC     ?= mpicc
MPIRUN    ?= mpirun
MPI_RANKS ?= 1 2 4
mpi-test: lib
	@if ! command -v $(MPICC) >/dev/null || ! command -v $(MPIRUN) >/dev/null; then \
	  echo "mpi-test: skipped (needs mpicc and mpirun, e.g. apt-get install openmpi-bin libopenmpi-dev)"; exit 0; fi; \
	mkdir -p $(OUT); \
	echo "$(MPICC) -std=c99 -Wall -Wextra -Werror -Iinclude examples/mpi_global_dice.c $(LINK) -lm"; \
	$(MPICC) -std=c99 -Wall -Wextra -Werror -Iinclude examples/mpi_global_dice.c $(LINK) -lm \
	  -o $(OUT)/mpi_global_dice || exit 1; \
	flags=; if $(MPIRUN) --version 2>&1 | grep -q "Open MPI"; then flags=--oversubscribe; \
	  if [ "$$(id -u)" = 0 ]; then flags="$$flags --allow-run-as-root"; fi; fi; \
	for n in $(MPI_RANKS); do \
	  echo "$(MPIRUN) $$flags -np $$n $(OUT)/mpi_global_dice"; \
	  $(MPIRUN) $$flags -np $$n $(OUT)/mpi_global_dice || exit 1; \
	done

exports-test: lib
	$(PYTHON) Tests/check_binary.py $(LIB) include/segloss.h

python-test: lib
	$(PYTHON) -m pytest -q Tests/python

# The fuzz target over every C entry point (Sources/SegLossFuzz). fuzz-replay runs the committed
# corpus through it as a test; fuzz builds it with libFuzzer and AddressSanitizer and fuzzes
# for FUZZ_SECONDS (new inputs go to .build-fuzz/corpus, crashes to .build-fuzz/).
# -use_counters=0 keeps edge coverage and drops hit counts: the worker pool's spin-waits run a
# timing-dependent number of times, and with hit counts each new number is "new coverage", so
# large (pool) inputs filled 40% of the corpus and most of the time. -max_len=1024: 250 values
# are pattern enough (they repeat to fill the count). FUZZ_FLAGS adds flags, e.g. -fork=2 on a
# machine whose 2 cores are free (for the long run: FUZZ_SECONDS=3600 FUZZ_FLAGS=-fork=2).
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?=
fuzz-replay:
	$(SWIFT) build --product SegLossFuzz
	.build/debug/SegLossFuzz Tests/fuzz/corpus/*

fuzz:
	$(SWIFT) build --scratch-path .build-fuzz --product SegLossFuzz \
	  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DSEGLOSS_LIBFUZZER -Xswiftc -O
	@mkdir -p .build-fuzz/corpus
	cd .build-fuzz && ./debug/SegLossFuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -use_counters=0 -max_len=1024 -rss_limit_mb=2048 $(FUZZ_FLAGS) corpus ../Tests/fuzz/corpus

# The Swift suite under AddressSanitizer (all of it, 2-4 min from a fresh clone) and
# ThreadSanitizer (the suites that run threads: the determinism, error, memory and pass
# tests; with the C stress test below, about 2 min).
# asan-test: XCTest's runner leaks a few objects at exit (Tests/sanitizers/lsan.supp).
# tsan-test then runs the C stress test for TSAN_STRESS_SECONDS against a TSan-instrumented
# release .so: built with the toolchain's clang (whose TSan runtime the Swift code was
# instrumented for, and which needs the toolchain's libdispatch); Tests/sanitizers/tsan.supp
# says why one report is suppressed.
TSAN_STRESS_SECONDS ?= 20
asan-test:
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/sanitizers/lsan.supp:print_suppressions=0 \
	  $(SWIFT) test --sanitize=address --scratch-path .build-asan
tsan-test:
	$(SWIFT) test --sanitize=thread --scratch-path .build-tsan \
	  --filter "Thread|Error statuses|Memory|statisticsPass|gradientPass"
	$(SWIFT) build -c release --product segloss --sanitize=thread --scratch-path .build-tsan
	bin=$$(dirname "$$(realpath "$$(command -v $(SWIFT))")"); runtime="$$bin/../lib/swift/linux"; \
	  "$$bin/clang" -std=c11 -O1 -g -fsanitize=thread -pthread -Iinclude Tests/c/stress_test.c \
	    -L.build-tsan/release -lsegloss -Wl,-rpath,$(CURDIR)/.build-tsan/release \
	    -L"$$runtime" -ldispatch -lBlocksRuntime -Wl,-rpath,"$$runtime" -lm -o .build-tsan/stress_test
	TSAN_OPTIONS="suppressions=$(CURDIR)/Tests/sanitizers/tsan.supp" .build-tsan/stress_test $(TSAN_STRESS_SECONDS)

# The C consumers under valgrind's memcheck (which runs the AVX2 kernel: it has no AVX-512,
# cannot fork a threaded program cleanly and does not emulate flush-to-zero, so those two
# tests are left out).
valgrind-test: c-test
	SEGLOSS_TEST_NO_FORK=1 SEGLOSS_TEST_NO_FP_STATE=1 valgrind -q --error-exitcode=1 \
	  $(OUT)/abi_test_c99
	SEGLOSS_TEST_NO_FORK=1 SEGLOSS_TEST_NO_FP_STATE=1 valgrind -q --error-exitcode=1 \
	  $(OUT)/abi_test_cxx17

bench: lib
	$(PYTHON) bench/run.py

clean:
	rm -rf .build
