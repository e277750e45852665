#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The report of make bench-snaps, in Markdown, from the guest's lines.

Usage: bench-snaps-report.py OUTPUT KERNEL_RELEASE CPU_MODEL
"""

import statistics
import sys


def main():
    path, release, cpu = sys.argv[1:4]
    runs = {}
    for line in open(path):
        if not line.startswith("bench-snaps "):
            continue
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        key = (int(f["chunk"]), int(f["snapshots"]))
        r = runs.setdefault(key, {}).setdefault(f["impl"], {"first": [], "rewrite": []})
        r["first"].append(float(f["first_iops"]))
        r["rewrite"].append(float(f["rewrite_iops"]))
    print("# Origin writes with several snapshots of one origin\n")
    print(f"Kernel {release}; host CPU {cpu}; QEMU TCG, one vCPU, "
          "`-icount shift=3,sleep=off` (guest time counts instructions: the "
          "figures repeat). An origin of 16 MiB and its COW devices on loop "
          "devices on a tmpfs; P snapshots, all taken before the first write; "
          "C and ours in one boot, on the same devices. fio psync, direct, "
          "writes of one chunk (at least 4 KiB) at random over the whole "
          "origin: once (first writes, each copies its chunk into every "
          "snapshot) and once more (rewrites, no copy). IOPS: the median of "
          "the rounds, with the lowest and highest when there were several; "
          "ours/C.\n")
    base = any("base" in r for r in runs.values())
    if base:
        print("\"ours before\" is another build of ours (`BENCH_IMPLS=base`, "
              "`BENCH_BASE_KO`), measured the same way in a boot of its own; "
              "\"gain\" is ours against it.\n")
    print("| chunk | snapshots | first C | first ours | first ours/C "
          + ("| first ours before | gain " if base else "")
          + "| rewrite C | rewrite ours | rewrite ours/C |")
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if base else ""))

    def fig(xs):
        m = statistics.median(xs)
        return f"{m:.1f}" + (f" ({min(xs):.1f}–{max(xs):.1f})" if len(xs) > 1 else "")

    for (chunk, n), r in sorted(runs.items()):
        if "c" not in r or "rust" not in r:
            continue
        c, o = r["c"], r["rust"]
        first = statistics.median(o["first"]) / statistics.median(c["first"])
        rewrite = statistics.median(o["rewrite"]) / statistics.median(c["rewrite"])
        before = ""
        if base:
            b = r.get("base")
            before = (f"| {fig(b['first'])} | "
                      f"{statistics.median(o['first']) / statistics.median(b['first']):.2f}× "
                      if b else "| | ")
        print(f"| {chunk * 512 // 1024} KiB | {n} | {fig(c['first'])} | {fig(o['first'])} "
              f"| {first:.2f}× {before}| {fig(c['rewrite'])} | {fig(o['rewrite'])} "
              f"| {rewrite:.2f}× |")


if __name__ == "__main__":
    main()
