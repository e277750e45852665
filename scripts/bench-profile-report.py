#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""make bench-profile's report: the guest kernel's instructions per function
and per unit of work (a chunk copied), for each implementation, with the
largest differences from the first one first.

Usage: bench-profile-report.py TOP WORKLOAD IMPL COUNTS GUEST_OUT [IMPL ...]

COUNTS holds the plugin's "pc insns execs" lines; GUEST_OUT the guest's
output, with "### units N" and "### kallsyms". A block is charged to the
text symbol at or below its start (functions the linker folded into one,
identical, are named by one of them). Rust symbols are shown by their
path (crate::module::function), their hashes dropped; the C module's and
ours are marked [C] and [ours], the kernel crate's [kernel crate], the
rest of the kernel is shown by name. The totals include the guest's boot,
set-up and teardown, the same for both; the per-function differences of
the workload's path stand out of them.
"""

import bisect
import collections
import re
import sys


def rust_path(sym):
    """The identifiers of a v0-mangled Rust symbol, joined by '::': enough
    to tell functions apart (generic arguments follow the function's path,
    disambiguators and back-references are skipped)."""
    idents, i = [], 2
    while i < len(sym):
        m = re.match(r"[CMXYN]s[0-9A-Za-z]*_|B[0-9A-Za-z]*_", sym[i:])
        if m:
            i += len(m.group(0))
            continue
        m = re.match(r"u?(\d+)", sym[i:])
        if not m:
            i += 1
            continue
        n, j = int(m.group(1)), i + len(m.group(0))
        if sym[j:j + 1] == "_" and (sym[j + 1:j + 2].isdigit() or sym[j + 1:j + 2] == "_"):
            j += 1
        ident = sym[j:j + n]
        if n and len(ident) == n:
            idents.append(ident)
            i = j + n
        else:
            i = j
    return "::".join(idents[:8]) if idents else sym


def name_of(sym, module):
    if sym.startswith("_R"):
        path = rust_path(sym)
        tag = "[ours]" if module == "dm_snapshot_rs" else "[kernel crate]"
        return f"{path} {tag}"
    if module == "dm_snapshot":
        return f"{sym} [C]"
    return sym + (f" [{module}]" if module else "")


def load(counts, guest_out):
    text = open(guest_out, errors="replace").read().replace("\0", "")
    units = int(re.search(r"^### units (\d+)", text, re.M).group(1))
    syms = []
    for line in text.split("### kallsyms\n", 1)[1].splitlines():
        f = line.split()
        if len(f) < 3 or f[1] not in "tTwW":
            continue
        addr = int(f[0], 16)
        if addr:
            module = f[3].strip("[]") if len(f) > 3 else ""
            syms.append((addr, f[2], module))
    syms.sort()
    addrs = [a for a, _, _ in syms]
    total = collections.Counter()
    for line in open(counts):
        pc, n, execs = line.split()
        i = bisect.bisect_right(addrs, int(pc, 16)) - 1
        key = name_of(syms[i][1], syms[i][2]) if i >= 0 else "?"
        total[key] += int(n) * int(execs)
    return units, total


def main():
    top, wl, rest = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    impls = [(rest[i], *load(rest[i + 1], rest[i + 2])) for i in range(0, len(rest), 3)]
    names = [n for n, _, _ in impls]
    per = [{k: v / u for k, v in t.items()} for _, u, t in impls]
    print(f"Instructions per chunk copied, workload {wl}, units: "
          + ", ".join(f"{n} {u}" for n, u, _ in impls))
    print()
    width = 12
    head = "".join(f"{n:>{width}}" for n in names)
    diff = "diff" if len(names) == 2 else ""
    print(f"{head}{diff:>{width}}  function")
    for label, keep in (("the snapshot modules and the kernel crate",
                         lambda k: k.endswith(("[C]", "[ours]", "[kernel crate]"))),
                        ("everything, the boot and the idle ticks included",
                         lambda k: True)):
        sums = [sum(v for k, v in p.items() if keep(k)) for p in per]
        d = f"{sums[1] - sums[0]:+.0f}" if len(sums) == 2 else ""
        print("".join(f"{s:>{width}.0f}" for s in sums) + f"{d:>{width}}  = {label}")
    keys = set().union(*per)
    if len(per) == 2:
        order = sorted(keys, key=lambda k: -abs(per[1].get(k, 0) - per[0].get(k, 0)))
    else:
        order = sorted(keys, key=lambda k: -max(p.get(k, 0) for p in per))
    for k in order[:top]:
        vals = [p.get(k, 0) for p in per]
        d = f"{vals[1] - vals[0]:+.1f}" if len(vals) == 2 else ""
        print("".join(f"{v:>{width}.1f}" for v in vals) + f"{d:>{width}}  {k[:110]}")


if __name__ == "__main__":
    main()
