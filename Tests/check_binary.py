#!/usr/bin/env python3
"""Checks the built libsegloss.so against include/segloss.h.

- the library defines exactly the functions the header declares with SEGLOSS_API, and no
  other dynamic symbol (`nm -D --defined-only`);
- it needs no Swift runtime library (`ldd`), so a process without a Swift toolchain loads it.

(The other half, each export's signature against its prototype, is checked when the library
is compiled: Sources/SegLoss/HeaderConformance.swift.)

Usage: check_binary.py LIBRARY HEADER
"""
import re
import subprocess
import sys


def header_functions(header_text):
    return set(re.findall(r"SEGLOSS_API\b[^;(]*?\b(segloss_\w+)\s*\(", header_text))


def exported_symbols(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def needed_libraries(library):
    out = subprocess.run(["ldd", library], check=True, capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def main(library, header):
    with open(header) as f:
        declared = header_functions(f.read())
    exported = exported_symbols(library)
    needed = needed_libraries(library)
    checks = [
        ("header declares functions", len(declared) >= 13, sorted(declared)),
        ("every declared function is exported", declared <= exported, sorted(declared - exported)),
        ("nothing but the declared functions is exported", exported <= declared,
         sorted(exported - declared)[:10]),
        ("no Swift runtime library is needed",
         not [n for n in needed if re.search(r"swift|dispatch|Foundation|BlocksRuntime", n)],
         needed),
    ]
    failed = 0
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
        failed += not ok
    print(f"check_binary: {len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
