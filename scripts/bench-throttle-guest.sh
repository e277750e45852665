#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Guest side of make bench's throttle workloads (BENCH_PARTS=throttle
# alone): the COW throttle benchmark, run against the C dm-snapshot.ko and
# then against ours in the same boot, on the same devices.
#
# Workload, with 16 KiB chunks. The origin sits on three regions of one
# loop device: F (16 MiB, fast), S (176 MiB) and L (64 MiB), S and L behind
# dm-delay devices that delay reads only (by READ_DELAY and 20 ms), so a
# copy out of S or L is slow while writes are not. F's chunks are copied
# into the snapshot first (they are remapped); then 16 writers write new
# chunks of S, keeping the throttle saturated, while
# - one paced writer rewrites F's chunks (no copy needed);
# - scripts/bench-pair.py walks L's chunks: a lead write starts a chunk's
#   copy and, once that copy is seen reading L, a follow write to the same
#   chunk is timed (its chunk's copy is in flight: it can be queued on it).
# Reported: p50/p99 latency of the rewrites and of the follow writes (and
# how long after its lead each follow write completed: about 0 when the
# lead's copy completed both), the
# saturating writers' IOPS, the highest number of copies in flight seen by
# sampling the origin regions' in-flight reads every 10 ms (each copy
# reads its chunk once; the same measure for both implementations), and
# ours' own counters. A second workload delays the COW device's writes
# instead (see one_write_delay).

set -euo pipefail
: "${KDIR:?}" "${TOP:?}"
SECS=${BENCH_SECONDS:-30}
THRESHOLD=${BENCH_THRESHOLD:-2}
READ_DELAY=${BENCH_READ_DELAY:-50}
FOLLOW_AFTER=${BENCH_FOLLOW_AFTER:-0}
W=/tmp/dm-snap-bench
mkdir -p "$W"
MiB=2048 # sectors

inflight_of() { # inflight_of DM_NAME: its /sys/block/*/inflight
	echo "/sys/block/$(basename "$(readlink -f "/dev/mapper/$1")")/inflight"
}

load() { # load IMPL: loads it with the benchmark's threshold; prints its module name
	local mod ko
	case $1 in
	c)	mod=dm_snapshot ko=$KDIR/drivers/md/dm-snapshot.ko ;;
	rust)	mod=dm_snapshot_rs ko=$KDIR/drivers/md/dm_snapshot_rs.ko ;;
	esac
	insmod "$ko"
	echo "$THRESHOLD" > "/sys/module/$mod/parameters/snapshot_cow_threshold"
	echo "$mod"
}

one() { # one IMPL
	local impl=$1 mod base cow origin s_in l_in
	mod=$(load "$impl")
	truncate -s 272M "$W/base.img"
	truncate -s 300M "$W/cow.img"
	base=$(losetup --show -f "$W/base.img")
	cow=$(losetup --show -f "$W/cow.img")
	dmsetup create bench-s --table \
		"0 $((176 * MiB)) delay $base $((16 * MiB)) $READ_DELAY $base $((16 * MiB)) 0"
	dmsetup create bench-l --table \
		"0 $((64 * MiB)) delay $base $((192 * MiB)) 20 $base $((192 * MiB)) 0"
	dmsetup create bench-base <<-EOF
	0 $((16 * MiB)) linear $base 0
	$((16 * MiB)) $((176 * MiB)) linear /dev/mapper/bench-s 0
	$((192 * MiB)) $((64 * MiB)) linear /dev/mapper/bench-l 0
	EOF
	dmsetup create bench-origin --table "0 $((256 * MiB)) snapshot-origin /dev/mapper/bench-base"
	origin=/dev/mapper/bench-origin
	dmsetup create bench-snap --table "0 $((256 * MiB)) snapshot /dev/mapper/bench-base $cow N 32"
	dmsetup suspend bench-origin
	dmsetup resume bench-origin
	# Copy F: its later rewrites need no copy.
	dd if=/dev/zero of="$origin" bs=1M count=16 oflag=direct status=none
	s_in=$(inflight_of bench-s) l_in=$(inflight_of bench-l)
	# Sample the copies' reads in flight every 10 ms.
	( max=0; while :; do
		read -r a _ < "$s_in"; read -r b _ < "$l_in"
		[ $((a + b)) -le "$max" ] || { max=$((a + b)); echo "$max" > "$W/inflight-max"; }
		sleep 0.01
	  done ) &
	local sampler=$!
	echo 0 > "$W/inflight-max"
	# Real-time priority, so that its polling sees each copy's read.
	chrt -f 10 python3 "$TOP/scripts/bench-pair.py" "$origin" "$l_in" $((192 << 20)) 16384 \
		"$((SECS - 4))" "$FOLLOW_AFTER" "$W/pair-$impl.json" &
	local pair=$!
	fio --output-format=json --output="$W/fio-$impl.json" \
		--name=saturate --filename="$origin" --numjobs=16 --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --offset=16M --size=176M --time_based --runtime="$SECS" \
		--name=rewrite --filename="$origin" --numjobs=1 --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --offset=0 --size=16M --rate_iops=50 \
		--time_based --runtime="$SECS" > /dev/null
	wait "$pair"
	kill "$sampler"
	wait "$sampler" 2>/dev/null || true
	local stats=
	[ "$impl" = c ] || stats=$(dmsetup message bench-snap 0 stats 2>/dev/null || true)
	python3 - "$W/fio-$impl.json" "$W/pair-$impl.json" "$impl" "$(cat "$W/inflight-max")" "$stats" <<'PY'
import json, sys
path, pair_path, impl, inflight, stats = sys.argv[1:6]
jobs = json.load(open(path))["jobs"]
pair = json.load(open(pair_path))
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")
rw = [j["write"] for j in jobs if j["jobname"] == "rewrite"][0]
p50, p99 = (rw["clat_ns"]["percentile"][k] / 1e6 for k in ("50.000000", "99.000000"))
fl = [x * 1e3 for x in pair["follow"]]
lag = [x * 1e3 for x in pair["lag"]]
sat_iops = sum(j["write"]["iops"] for j in jobs if j["jobname"] == "saturate")
print(f"{impl:5s} read-delay: rewrite p50 {p50:7.2f} ms p99 {p99:7.2f} ms ({rw['total_ios']} writes)"
      f"  follow p50 {pct(fl, 50):7.2f} ms p99 {pct(fl, 99):7.2f} ms ({len(fl)} writes,"
      f" {pair['missed']} missed; after lead p50 {pct(lag, 50):.2f} p99 {pct(lag, 99):.2f} ms)"
      f"  saturating {sat_iops:6.1f} IOPS  max copies in flight {inflight}"
      + (f"  [{stats}]" if stats else ""))
# The same, for the report of record (scripts/bench-report.py).
print(f"bench mode=icount impl={impl} wl=throttle-read-delay rewrite_p99_ms={p99:.3f}"
      f" follow_p99_ms={pct(fl, 99):.3f} sat_iops={sat_iops:.1f}")
PY
	dmsetup remove bench-snap
	dmsetup remove bench-origin
	dmsetup remove bench-base bench-s bench-l
	losetup -d "$base" "$cow"
	rm -f "$W/base.img" "$W/cow.img"
	rmmod "$mod"
}

# The second workload: the COW device's writes delayed (WRITE_DELAY ms), so
# each copy takes that long to land; WRITERS writers keep the throttle
# saturated with copies, while one paced writer (200 IOPS) rewrites chunks
# copied before, which need no copy. A second paced writer writes a plain
# loop device beside them under the same load: the control, whose latency
# is the guest's own (scheduling, the loop driver), not the target's. A
# third paced writer writes the origin's own loop device, past the end of
# the origin and snapshot tables: the origin device's queue, which the
# rewrites share with the copies' reads and the copying writers' writes,
# without the target.
# Reported: p50/p99 of the paced writers, and the rewrites' p99 less the
# control's.
# dm-delay holds writes of less than 50 ms in a kthread that polls while it
# holds any, so the one vCPU is busy throughout: the saturating writers'
# IOPS is then their share of the CPU, less what the paced writers take,
# and a target that lets the rewrites through (ours: 200 IOPS) leaves less
# to its copiers than one that holds them behind the copies (C). The
# write-delay-alone workload runs the same without the rewrites: the
# throttle's own pace, its copies in flight given by dm-delay's status.
WRITE_DELAY=${BENCH_WRITE_DELAY:-10}
WRITERS=${BENCH_WRITERS:-12}
# The paced rewrites' rate (write-delay-alone leaves them out).
REWRITE_IOPS=${BENCH_REWRITE_IOPS:-200}

one_write_delay() { # one_write_delay IMPL REWRITE_IOPS (0: none, workload write-delay-alone)
	local impl=$1 mod base cow ctl origin rewrite=() wl=throttle-write-delay-alone
	mod=$(load "$impl")
	[ "$2" = 0 ] || wl=throttle-write-delay rewrite=(--name=rewrite --filename=/dev/mapper/bench-origin
		--numjobs=1 --rw=randwrite --bs=4k --direct=1 --ioengine=psync --offset=0
		--size=16M --rate_iops="$2" --time_based --runtime="$SECS")
	truncate -s 272M "$W/base.img"
	truncate -s 300M "$W/cow.img"
	truncate -s 16M "$W/ctl.img"
	base=$(losetup --show -f "$W/base.img")
	cow=$(losetup --show -f "$W/cow.img")
	ctl=$(losetup --show -f "$W/ctl.img")
	dmsetup create bench-dcow --table \
		"0 $((300 * MiB)) delay $cow 0 0 $cow 0 $WRITE_DELAY"
	dmsetup create bench-origin --table "0 $((256 * MiB)) snapshot-origin $base"
	origin=/dev/mapper/bench-origin
	dmsetup create bench-snap --table \
		"0 $((256 * MiB)) snapshot $base /dev/mapper/bench-dcow N 32"
	dmsetup suspend bench-origin
	dmsetup resume bench-origin
	# Copy the first 16 MiB: their rewrites need no copy.
	dd if=/dev/zero of="$origin" bs=1M count=16 oflag=direct status=none
	# Sample the copies in flight every 100 ms as dm-delay counts them: the
	# COW writes it holds (its status's second figure; /sys/block/*/inflight
	# counts a bio only once dm-delay has let it go). Each copy is one
	# write held there for WRITE_DELAY ms; the same measure for both.
	local sampler
	python3 - "$W/wd-inflight" <<-'PY' &
	import signal, subprocess, sys, time
	out = sys.argv[1]
	mx = total = n = 0
	def done(*_):
	    open(out, "w").write(f"{mx} {total} {n}\n")
	    sys.exit(0)
	signal.signal(signal.SIGTERM, done)
	while True:
	    st = subprocess.run(["dmsetup", "status", "bench-dcow"], capture_output=True,
	                        text=True).stdout.split()
	    w = int(st[4]) if len(st) > 4 else 0
	    mx, total, n = max(mx, w), total + w, n + 1
	    time.sleep(0.1)
	PY
	sampler=$!
	fio --output-format=json --output="$W/fio-wd-$impl.json" \
		--name=saturate --filename="$origin" --numjobs="$WRITERS" --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --offset=16M --size=240M --time_based --runtime="$SECS" \
		"${rewrite[@]}" \
		--name=control --filename="$ctl" --numjobs=1 --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --rate_iops=200 --time_based --runtime="$SECS" \
		--name=origin-dev --filename="$base" --numjobs=1 --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --offset=256M --size=16M --rate_iops=200 \
		--time_based --runtime="$SECS" > /dev/null
	kill "$sampler"
	wait "$sampler" 2>/dev/null || true
	local stats=
	[ "$impl" = c ] || stats=$(dmsetup message bench-snap 0 stats 2>/dev/null || true)
	python3 - "$W/fio-wd-$impl.json" "$impl" "$(cat "$W/wd-inflight")" "$stats" "$wl" <<'PY'
import json, sys
path, impl, inflight, stats, wl = sys.argv[1:6]
imax, isum, n = (int(x) for x in inflight.split())
jobs = json.load(open(path))["jobs"]
def lat(name):
    w = ([j["write"] for j in jobs if j["jobname"] == name]
         or [{"clat_ns": {"percentile": {"50.000000": 0, "99.000000": 0}}, "total_ios": 0}])[0]
    p = w["clat_ns"]["percentile"]
    return p["50.000000"] / 1e6, p["99.000000"] / 1e6, w["total_ios"]
r50, r99, rn = lat("rewrite")
c50, c99, cn = lat("control")
o50, o99, on = lat("origin-dev")
sat = sum(j["write"]["iops"] for j in jobs if j["jobname"] == "saturate")
print(f"{impl:5s} {wl[len('throttle-'):]}:"
      + (f" rewrite p50 {r50:7.2f} ms p99 {r99:7.2f} ms ({rn} writes)" if rn else "")
      + f"  control p50 {c50:7.2f} ms p99 {c99:7.2f} ms ({cn} writes)"
      f"  origin device p50 {o50:7.2f} ms p99 {o99:7.2f} ms ({on} writes)"
      + (f"  rewrite p99 less control {r99 - c99:7.2f} ms" if rn else "")
      + f"  saturating {sat:6.1f} IOPS"
      f"  copies in flight: mean {isum / max(n, 1):.2f}, max {imax} ({n} samples)"
      + (f"  [{stats}]" if stats else ""))
print(f"bench mode=icount impl={impl} wl={wl}"
      + (f" rewrite_p99_ms={r99:.3f}" if rn else "")
      + f" control_p99_ms={c99:.3f} sat_iops={sat:.1f}")
PY
	dmsetup remove bench-snap
	dmsetup remove bench-origin bench-dcow
	losetup -d "$base" "$cow" "$ctl"
	rm -f "$W/base.img" "$W/cow.img" "$W/ctl.img"
	rmmod "$mod"
}

WORKLOADS=" ${BENCH_THROTTLE_WORKLOADS:-read-delay write-delay write-delay-alone} "
case $WORKLOADS in *" read-delay "*)
	echo "COW throttle benchmark: threshold $THRESHOLD, ${SECS}s, origin read delay ${READ_DELAY} ms (S) / 20 ms (L), chunk 16 KiB"
	one c
	one rust
esac
case $WORKLOADS in *" write-delay "*)
	echo "COW writes delayed ${WRITE_DELAY} ms: threshold $THRESHOLD, $WRITERS copying writers, rewrites at $REWRITE_IOPS IOPS, ${SECS}s, chunk 16 KiB"
	one_write_delay c "$REWRITE_IOPS"
	one_write_delay rust "$REWRITE_IOPS"
esac
case $WORKLOADS in *" write-delay-alone "*)
	echo "COW writes delayed ${WRITE_DELAY} ms, the copying writers alone: threshold $THRESHOLD, $WRITERS copying writers, ${SECS}s, chunk 16 KiB"
	one_write_delay c 0
	one_write_delay rust 0
esac
