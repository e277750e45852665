#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Guest side of scripts/bench.sh: the COW throttle benchmark, run against
# the C dm-snapshot.ko and then against ours in the same boot, on the same
# devices.
#
# Workload, with 16 KiB chunks: the origin's first 16 MiB are copied into
# the snapshot first (its chunks are remapped); then 16 writers write new
# chunks elsewhere, keeping the throttle saturated on a slow (dm-delay) COW
# device, while
# - one paced writer rewrites the already-copied chunks (no copy needed);
# - two paced writers walk the same chunks, the second 20 ms behind: one
#   writes the first 4 KiB of each chunk, the other the second, so the
#   second often finds the chunk's copy in flight (it need not wait for
#   the throttle then, only for that copy).
# Reported: p50/p99 latency of both, the saturating writers' IOPS, the
# highest copies in flight seen by sampling the COW device's in-flight
# writes (the same for both), and ours' own counters.

set -euo pipefail
: "${KDIR:?}" "${TOP:?}"
SECS=${BENCH_SECONDS:-30}
THRESHOLD=${BENCH_THRESHOLD:-8}
W=/tmp/dm-snap-bench
mkdir -p "$W"

one() { # one IMPL
	local impl=$1 mod ko base cow cowdev sz origin
	case $impl in
	c)	mod=dm_snapshot ko=$KDIR/drivers/md/dm-snapshot.ko ;;
	rust)	mod=dm_snapshot_rs ko=$TOP/drivers/md/dm_snapshot_rs.ko ;;
	esac
	insmod "$ko"
	echo "$THRESHOLD" > "/sys/module/$mod/parameters/snapshot_cow_threshold"
	truncate -s 256M "$W/base.img"
	truncate -s 300M "$W/cow.img"
	base=$(losetup --show -f "$W/base.img")
	cowdev=$(losetup --show -f "$W/cow.img")
	sz=$(blockdev --getsz "$base")
	dmsetup create bench-cow --table "0 $(blockdev --getsz "$cowdev") delay $cowdev 0 5"
	cow=/dev/mapper/bench-cow
	dmsetup create bench-origin --table "0 $sz snapshot-origin $base"
	origin=/dev/mapper/bench-origin
	dmsetup create bench-snap --table "0 $sz snapshot $base $cow N 32"
	dmsetup suspend bench-origin
	dmsetup resume bench-origin
	# Copy the first 16 MiB: their later rewrites need no copy.
	dd if=/dev/zero of="$origin" bs=1M count=16 oflag=direct status=none
	local dmname inflight=/sys/block/$(basename "$(readlink -f $cow)")/inflight
	# Sample the COW device's in-flight writes every 10 ms.
	( max=0; while :; do
		read -r _ w < "$inflight"
		[ "$w" -le "$max" ] || { max=$w; echo "$max" > "$W/inflight-max"; }
		sleep 0.01
	  done ) &
	local sampler=$!
	echo 0 > "$W/inflight-max"
	fio --output-format=json --output="$W/fio-$impl.json" \
		--name=saturate --filename="$origin" --numjobs=16 --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --offset=16M --size=176M --time_based --runtime="$SECS" \
		--name=rewrite --filename="$origin" --numjobs=1 --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --offset=0 --size=16M --rate_iops=50 \
		--time_based --runtime="$SECS" \
		--name=lead --filename="$origin" --numjobs=1 --rw=write:12k --bs=4k \
		--direct=1 --ioengine=psync --offset=192M --size=64M --rate_iops=20 \
		--time_based --runtime="$SECS" \
		--name=follow --filename="$origin" --numjobs=1 --rw=write:12k --bs=4k \
		--direct=1 --ioengine=psync --offset=196612k --size=64M --startdelay=20ms \
		--rate_iops=20 --time_based --runtime="$SECS" > /dev/null
	kill "$sampler"
	wait "$sampler" 2>/dev/null || true
	local stats=
	[ "$impl" = c ] || stats=$(dmsetup message bench-snap 0 stats 2>/dev/null || true)
	python3 - "$W/fio-$impl.json" "$impl" "$(cat "$W/inflight-max")" "$stats" <<'PY'
import json, sys
path, impl, inflight, stats = sys.argv[1:5]
jobs = json.load(open(path))["jobs"]
def lat(name):
    ws = [j["write"] for j in jobs if j["jobname"] == name]
    # The median and 99th percentile over the jobs of that name: the
    # largest of their own (a conservative summary for two similar jobs).
    p50 = max(w["clat_ns"]["percentile"]["50.000000"] for w in ws) / 1e6
    p99 = max(w["clat_ns"]["percentile"]["99.000000"] for w in ws) / 1e6
    n = sum(w["total_ios"] for w in ws)
    return f"{name} p50 {p50:7.2f} ms p99 {p99:7.2f} ms ({n} writes)"
sat = [j for j in jobs if j["jobname"] == "saturate"]
sat_iops = sum(j["write"]["iops"] for j in sat)
print(f"{impl:5s} {lat('rewrite')}  {lat('lead')}  {lat('follow')}"
      f"  saturating {sat_iops:6.1f} IOPS  max COW writes in flight {inflight}"
      + (f"  [{stats}]" if stats else ""))
PY
	dmsetup remove bench-snap
	dmsetup remove bench-origin
	dmsetup remove bench-cow
	losetup -d "$base" "$cowdev"
	rm -f "$W/base.img" "$W/cow.img"
	rmmod "$mod"
}

echo "COW throttle benchmark: threshold $THRESHOLD, ${SECS}s, COW delay 5 ms, chunk 16 KiB"
one c
one rust
