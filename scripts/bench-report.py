#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The report of record of make bench, in Markdown, and its plot.

Usage: bench-report.py OUTPUT KERNEL_RELEASE CPU_MODEL ACCEL PNG FLAVOUR

OUTPUT holds the guests' "bench key=value..." lines (bench-fio-guest.sh,
bench-throttle-guest.sh). The report goes to stdout; the plot to PNG if
matplotlib can be imported (then the report links it).
"""

import os
import statistics
import sys

IMPL_NAMES = {"raw": "raw", "linear": "dm-linear", "thin": "dm-thin",
              "c": "C", "rust": "ours", "base": "ours before"}
WORKLOADS = [
    ("origin-first", "origin, first writes", "IOPS"),
    ("origin-rewrite", "origin, rewrites", "IOPS"),
    ("origin-seq", "origin, 256 KiB sequential", "MiB/s"),
    ("snap-read", "snapshot, 4 KiB random reads", "IOPS"),
    ("snap-write", "snapshot, 4 KiB random writes", "IOPS"),
    ("origin-first-slow", "origin, first writes, COW writes delayed", "IOPS"),
]


def parse(path):
    rows = []
    for line in open(path, errors="replace"):
        if not line.startswith("bench "):
            continue
        f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        rows.append(f)
    return rows


def med(xs):
    return statistics.median(xs) if xs else None


def fig(xs, fmt="{:.1f}"):
    if not xs:
        return ""
    s = fmt.format(med(xs))
    if len(xs) > 1 and max(xs) != min(xs):
        s += " (" + fmt.format(min(xs)) + "–" + fmt.format(max(xs)) + ")"
    return s


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else ""


class Fio:
    """The fio figures of one mode, by (impl, wl, chunk, snaps, jobs)."""

    def __init__(self, rows, mode):
        self.v = {}
        self.p99 = {}
        for f in rows:
            if f.get("mode") != mode or "iops" not in f:
                continue
            key = (f["impl"], f["wl"], int(f["chunk"]), int(f["snaps"]), int(f["jobs"]))
            unit = "mibps" if f["wl"] == "origin-seq" else "iops"
            self.v.setdefault(key, []).append(float(f[unit]))
            self.p99.setdefault(key, []).append(float(f["p99_ms"]))

    def get(self, impl, wl, chunk, snaps, jobs=1):
        return self.v.get((impl, wl, chunk, snaps, jobs), [])

    def p(self, impl, wl, chunk, snaps, jobs=1):
        return self.p99.get((impl, wl, chunk, snaps, jobs), [])

    def keys(self, what):
        return sorted({k[what] for k in self.v})


def fio_tables(fio, out, shortfalls, plot_rows):
    impls = [i for i in ("raw", "linear", "thin", "c", "rust", "base")
             if any(k[0] == i for k in fio.v)]
    for chunk in fio.keys(2):
        out.append(f"\n### Chunks of {chunk * 512 // 1024} KiB\n")
        out.append("| workload | snapshots | unit | "
                   + " | ".join(IMPL_NAMES[i] for i in impls)
                   + " | ours/C | p99 C (ms) | p99 ours (ms) |")
        out.append("|---|---|---|" + "---|" * len(impls) + "---|---|---|")
        for wl, title, unit in WORKLOADS:
            for n in fio.keys(3):
                c, o = fio.get("c", wl, chunk, n), fio.get("rust", wl, chunk, n)
                if not c and not o:
                    continue
                cells = [fig(fio.get(i, wl, chunk, n)) for i in impls]
                r = ratio(med(o), med(c))
                out.append(f"| {title} | {n} | {unit} | " + " | ".join(cells)
                           + f" | {r} | {fig(fio.p('c', wl, chunk, n), '{:.2f}')}"
                           + f" | {fig(fio.p('rust', wl, chunk, n), '{:.2f}')} |")
                if c and o:
                    x = med(o) / med(c)
                    label = f"{wl} {chunk * 512 // 1024}K ×{n}"
                    plot_rows.append((label, x))
                    if x < 1.0:
                        shortfalls.append(f"{title}, {chunk * 512 // 1024} KiB chunks, "
                                          f"{n} snapshot{'s' if n > 1 else ''}: "
                                          f"{x:.2f}× ({(1 - x) * 100:.1f}% short)")
                    if wl == "origin-first" and n > 1 and x < 1.5:
                        shortfalls.append(f"{title}, {chunk * 512 // 1024} KiB chunks, "
                                          f"{n} snapshots: {x:.2f}×, short of the "
                                          "1.5× asked for several snapshots")


def throttle_table(rows, out, shortfalls):
    t = {}
    for f in rows:
        if not f.get("wl", "").startswith("throttle-"):
            continue
        for k, v in f.items():
            if k.endswith("_ms") or k.endswith("_iops"):
                t.setdefault((f["wl"], k), {}).setdefault(f["impl"], []).append(float(v))
    if not t:
        return
    out.append("\n## The COW throttle workloads\n")
    out.append("One snapshot (N, 16 KiB chunks), threshold 2 copies, 30 s each "
               "(`scripts/bench-throttle-guest.sh` describes them). read-delay: "
               "copies read a slow origin region; `rewrite` writes chunks copied "
               "before (no copy needed), `follow` writes a chunk whose copy is in "
               "flight. write-delay: the COW device's writes are delayed 10 ms; "
               "`control` is a plain loop device under the same load; dm-delay polls "
               "for such delays, so the vCPU is busy throughout and `sat` is the "
               "copying writers' share of it, less what the paced writers take; "
               "write-delay-alone is the same without the paced rewrites. Latencies: "
               "lower is better; `sat` is the saturating writers' IOPS.\n")
    out.append("| workload | figure | C | ours | ours/C |")
    out.append("|---|---|---|---|---|")
    for (wl, k), v in sorted(t.items()):
        c, o = v.get("c", []), v.get("rust", [])
        out.append(f"| {wl[len('throttle-'):]} | {k} | {fig(c, '{:.2f}')} | "
                   f"{fig(o, '{:.2f}')} | {ratio(med(o), med(c))} |")
        if not (c and o):
            continue
        if k == "sat_iops" and med(o) < med(c):
            shortfalls.append(f"throttle {wl[len('throttle-'):]}, saturating IOPS: "
                              f"{med(o) / med(c):.2f}×")
        if k in ("rewrite_p99_ms", "follow_p99_ms") and med(o) > med(c):
            shortfalls.append(f"throttle {wl[len('throttle-'):]}, {k}: "
                              f"{med(o):.2f} against C's {med(c):.2f} ms")


def jobs_table(fio, out):
    if not fio.v:
        return
    impls = [i for i in ("raw", "linear", "c", "rust", "base") if any(k[0] == i for k in fio.v)]
    out.append("\n## Several jobs, several vCPUs\n")
    out.append("Multi-threaded TCG in real time: the host's load shows in these "
               "figures, so only ratios within this run mean anything. 4 KiB "
               "chunks, one snapshot; each job writes (or reads) its own slice "
               "of the device.\n")
    out.append("| workload | jobs | unit | " + " | ".join(IMPL_NAMES[i] for i in impls)
               + " | ours/C |")
    out.append("|---|---|---|" + "---|" * len(impls) + "---|")
    for wl, title, unit in WORKLOADS:
        for chunk in fio.keys(2):
            for j in fio.keys(4):
                c, o = fio.get("c", wl, chunk, 1, j), fio.get("rust", wl, chunk, 1, j)
                if not c and not o:
                    continue
                out.append(f"| {title} | {j} | {unit} | "
                           + " | ".join(fig(fio.get(i, wl, chunk, 1, j)) for i in impls)
                           + f" | {ratio(med(o), med(c))} |")


def plot(png, rows, fio):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig_, (a, b) = plt.subplots(1, 2, figsize=(13, max(4, 0.3 * len(rows) + 1.5)))
    labels = [r[0] for r in rows]
    xs = [r[1] for r in rows]
    a.barh(range(len(xs)), xs, color=["tab:green" if x >= 1 else "tab:red" for x in xs])
    a.set_yticks(range(len(xs)), labels, fontsize=8)
    a.invert_yaxis()
    a.axvline(1.0, color="black", linewidth=1)
    a.axvline(1.5, color="grey", linestyle="--", linewidth=1)
    a.set_xlabel("ours / C (median; higher is better)")
    a.set_title("Ours against C, one vCPU, -icount")
    for chunk in fio.keys(2):
        for impl, style in (("c", "o-"), ("rust", "s-"), ("thin", "^--")):
            pts = [(n, med(fio.get(impl, "origin-first", chunk, n))) for n in fio.keys(3)]
            pts = [(n, v) for n, v in pts if v]
            if pts:
                b.plot([p[0] for p in pts], [p[1] for p in pts], style,
                       label=f"{IMPL_NAMES[impl]}, {chunk * 512 // 1024} KiB")
    b.set_xscale("log", base=2)
    b.set_xticks(fio.keys(3), [str(n) for n in fio.keys(3)])
    b.set_yscale("log")
    b.set_xlabel("snapshots of the origin")
    b.set_ylabel("first-write IOPS (writes of one chunk)")
    b.set_title("Origin first writes against the number of snapshots")
    b.legend(fontsize=8)
    fig_.tight_layout()
    fig_.savefig(png, dpi=100)
    return True


def main():
    path, release, cpu, accel, png, flavour = sys.argv[1:7]
    rows = parse(path)
    fio = Fio(rows, "icount")
    out, shortfalls, plot_rows = [], [], []
    fio_tables(fio, out, shortfalls, plot_rows)
    throttle_table(rows, out, shortfalls)
    jobs_table(Fio(rows, "mttcg"), out)
    have_plot = plot(png, plot_rows, fio)

    print("# Benchmark of record: C dm-snapshot against ours\n")
    kernel = {"bench": "the benchmark kernel: the test kernel's configuration "
                       "without lockdep (`kernel/configs/dm_snap_rs_bench.config`)",
              "default": "the test kernel, lockdep on"}.get(flavour, flavour)
    print(f"Kernel {release} ({kernel}); host CPU {cpu}; "
          f"QEMU {accel}. `make bench` (`scripts/bench.sh`): C and ours, and "
          "the references (the raw device, dm-linear, a dm-thin snapshot), "
          "each workload on the same devices in the same boot. Devices are "
          "loop devices on a tmpfs: an origin of 16 MiB (filled first) and "
          "one COW device per snapshot; P snapshots, all taken before the "
          "first write. fio psync, direct. Each figure is the median of the "
          "rounds, with the lowest and highest in brackets where they "
          "differ; ours/C compares the medians.\n")
    if have_plot:
        print(f"![ours/C and first writes against snapshots]({os.path.basename(png)})\n")
    print("## One vCPU, `-icount shift=3,sleep=off`\n")
    print("Guest time counts instructions, so a figure repeats whatever the "
          "host does. Workloads: first writes of one chunk (at least 4 KiB) "
          "at random over the origin, each chunk once (each copies its chunk "
          "into every snapshot); rewrites of the same (no copy); 4 KiB random "
          "reads of the snapshot afterwards (every chunk remapped); 256 KiB "
          "sequential writes over a fresh origin; 4 KiB random writes over a "
          "fresh snapshot; first writes again, over the origin's first MiB, "
          "with COW devices whose writes and flushes are delayed (dm-delay, "
          "`BENCH_COW_DELAY` ms, rounded up to the next timer tick), so that "
          "commits wait for I/O as on a disk. raw and dm-linear take the "
          "same I/O on the device itself; dm-thin is a thin volume and its "
          "snapshots, blocks of 64 KiB (its least), so it runs in the 64 KiB "
          "rows only.")
    print("\n".join(out))
    print("\n## Short of the targets\n")
    if shortfalls:
        for s in shortfalls:
            print(f"- {s}")
    elif plot_rows:
        print("None: ours is at least C on every workload.")
    else:
        print("No workload ran on both C and ours.")


if __name__ == "__main__":
    main()
