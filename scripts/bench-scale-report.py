#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The report of make bench-scale, in Markdown, from the guest's lines.

Usage: bench-scale-report.py OUTPUT KERNEL_RELEASE CPU_MODEL [FLAVOUR]
"""

import statistics
import sys


def main():
    path, release, cpu = sys.argv[1:4]
    flavour = sys.argv[4] if len(sys.argv) > 4 else "default"
    kernel = {"bench": "the benchmark kernel, without lockdep",
              "default": "the test kernel, lockdep on"}.get(flavour, flavour)
    runs = {}
    for line in open(path):
        if not line.startswith("bench-scale "):
            continue
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        runs.setdefault((f["layout"], int(f["n"]), f["impl"]), []).append(f)
    # Each case: the median of its rounds, the spread of its times.
    for key, rounds in runs.items():
        times = [float(r["create_s"]) for r in rounds]
        kib = [int(r["slab_kib"]) + int(r["vmalloc_kib"]) for r in rounds]
        runs[key] = {"create_s": statistics.median(times), "lo": min(times),
                     "hi": max(times), "kib": statistics.median(kib),
                     "status": rounds[0]["status"], "rounds": len(rounds)}
    print("# Exception tables at scale: memory and activation time\n")
    print(f"Kernel {release} ({kernel}); host CPU {cpu}; QEMU TCG, one vCPU, "
          "`-icount shift=3,sleep=off` (guest time counts instructions: the "
          "figures repeat). A P snapshot of 4 KiB chunks over a dm-zero "
          "origin, its COW device a loop device on a sparse tmpfs image "
          "written as C lays it out (`scripts/bench-scale-image.py`): seq, "
          "the origin's first N chunks in order (runs of consecutive "
          "chunks); random, N chunks of an origin of 4N in a random order. "
          "Both implementations activate the same image, in one boot.\n")
    print("Memory: the growth of `SUnreclaim` plus `VmallocUsed` in "
          "`/proc/meminfo` (the kernel's own slab and vmalloc accounting) "
          "across the activation, less that of a snapshot with no "
          "exception (C's dm_exception slab objects and hash buckets; our "
          "nodes and buckets), per exception. Activation: the time of "
          "device's create, table load (which reads the metadata) and "
          "resume, timed around their ioctls alone, with udevd stopped. Each figure is the median of the rounds (each "
          "implementation activates each image that many times); the "
          "activation times' lowest and highest are in brackets.\n")
    names = {"c": "C", "rust": "ours", "base": "ours before"}
    base = any(impl == "base" for (_, _, impl) in runs)
    if base:
        print("\"ours before\" is another build of ours (`BENCH_IMPLS=base`, "
              "`BENCH_BASE_KO`), on the same images in the same boot.\n")
    empty = {}
    for impl in names:
        e = runs.get(("empty", 0, impl))
        if e:
            empty[impl] = e["kib"]
            print(f"- empty snapshot, {names[impl]}: "
                  f"{empty[impl]} KiB, activation {e['create_s']:.3f} s")
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
            kib = r["kib"] - empty.get(impl, 0)
            return kib * 1024 / n

        bc, bo = per(c, "c"), per(o, "rust")
        tc, to = c["create_s"], o["create_s"]

        def t(r):
            return (f"{r['create_s']:.3f}" + (f" ({r['lo']:.3f}–{r['hi']:.3f})"
                                             if r["rounds"] > 1 else ""))

        ratio = f"{bo / bc:.2f}×" if bc > 0 else "–"
        before = ""
        if base:
            b = runs.get((lay, n, "base"))
            before = (f"| {t(b)} | {to / b['create_s']:.2f}× " if b else "| | ")
        print(f"| {lay} | {n:,} | {bc:.1f} | {bo:.1f} | {ratio} "
              f"| {t(c)} | {t(o)} | {to / tc:.2f}× {before}|")
    print()
    print("Status lines after activation (`<allocated>/<total> <metadata>`):\n")
    for (lay, n, impl), f in sorted(runs.items()):
        print(f"- {lay} {n} {names.get(impl, impl)}: `{f['status'].replace('_', ' ')}`")


if __name__ == "__main__":
    main()
