#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The report of make bench-scale, in Markdown, from the guest's lines.

Usage: bench-scale-report.py OUTPUT KERNEL_RELEASE CPU_MODEL
"""

import sys


def main():
    path, release, cpu = sys.argv[1:4]
    runs = {}
    for line in open(path):
        if not line.startswith("bench-scale "):
            continue
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        runs[(f["layout"], int(f["n"]), f["impl"])] = f
    print("# Exception tables at scale: memory and activation time\n")
    print(f"Kernel {release}; host CPU {cpu}; QEMU TCG, one vCPU, "
          "`-icount shift=3,sleep=off` (guest time counts instructions: the "
          "figures repeat). A P snapshot of 4 KiB chunks over a dm-zero "
          "origin, its COW device a loop device on a sparse tmpfs image "
          "written as C lays it out (`scripts/bench-scale-image.py`): seq, "
          "the origin's first N chunks in order (runs of consecutive "
          "chunks); random, N chunks of an origin of 4N in a random order. "
          "Both implementations activate the same image, in one boot.\n")
    print("Memory: the growth of `SUnreclaim` plus `VmallocUsed` in "
          "`/proc/meminfo` (the kernel's own slab and vmalloc accounting) "
          "across `dmsetup create`, less that of a snapshot with no "
          "exception (C's dm_exception slab objects and hash buckets; our "
          "nodes and buckets), per exception. Activation: the time of "
          "`dmsetup create` (table load, which reads the metadata, and "
          "resume).\n")
    names = {"c": "C", "rust": "ours", "base": "ours before"}
    base = any(impl == "base" for (_, _, impl) in runs)
    if base:
        print("\"ours before\" is another build of ours (`BENCH_IMPLS=base`, "
              "`BENCH_BASE_KO`), on the same images in the same boot.\n")
    empty = {}
    for impl in names:
        e = runs.get(("empty", 0, impl))
        if e:
            empty[impl] = int(e["slab_kib"]) + int(e["vmalloc_kib"])
            print(f"- empty snapshot, {names[impl]}: "
                  f"{empty[impl]} KiB, activation {float(e['create_s']):.3f} s")
    print()
    print("| layout | exceptions | bytes/exception C | ours | ours/C "
          "| activation C (s) | ours (s) | ours/C "
          + ("| ours before (s) | ours/before " if base else "") + "|")
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if base else ""))
    keys = sorted({(lay, n) for (lay, n, _) in runs if lay != "empty"},
                  key=lambda k: (k[0] != "seq", k[1]))
    for lay, n in keys:
        c, o = runs.get((lay, n, "c")), runs.get((lay, n, "rust"))
        if not c or not o:
            continue

        def per(r, impl):
            kib = int(r["slab_kib"]) + int(r["vmalloc_kib"]) - empty.get(impl, 0)
            return kib * 1024 / n

        bc, bo = per(c, "c"), per(o, "rust")
        tc, to = float(c["create_s"]), float(o["create_s"])
        ratio = f"{bo / bc:.2f}×" if bc > 0 else "–"
        before = ""
        if base:
            b = runs.get((lay, n, "base"))
            before = (f"| {float(b['create_s']):.3f} | {to / float(b['create_s']):.2f}× "
                      if b else "| | ")
        print(f"| {lay} | {n:,} | {bc:.1f} | {bo:.1f} | {ratio} "
              f"| {tc:.3f} | {to:.3f} | {to / tc:.2f}× {before}|")
    print()
    print("Status lines after activation (`<allocated>/<total> <metadata>`):\n")
    for (lay, n, impl), f in sorted(runs.items()):
        print(f"- {lay} {n} {impl}: `{f['status'].replace('_', ' ')}`")


if __name__ == "__main__":
    main()
