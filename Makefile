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

.PHONY: all lib demo test swift-test c-test exports-test python-test bench clean
all: demo

lib:
	$(SWIFT) build -c release --product segloss

demo: lib
	@mkdir -p $(OUT)
	$(CC) -std=c99 $(STRICT) examples/demo.c $(LINK) -o $(OUT)/demo_c
	$(OUT)/demo_c
	$(PYTHON) examples/demo.py

test: lib swift-test c-test exports-test python-test

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

exports-test: lib
	$(PYTHON) Tests/check_binary.py $(LIB) include/segloss.h

python-test: lib
	$(PYTHON) -m pytest -q Tests/python

bench: lib
	$(PYTHON) bench/run.py

clean:
	rm -rf .build
