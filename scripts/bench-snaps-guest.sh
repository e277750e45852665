#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Guest side of make bench-snaps: origin writes with several snapshots of
# one origin, C against ours, in one boot on the same devices.
#
# For each implementation, chunk size and number of snapshots: an origin
# of BENCH_SIZE MiB and one COW device per snapshot, loop devices on a
# tmpfs; persistent (P) snapshots, all taken before the first write. fio
# (psync, direct, writes of one chunk, at least 4 KiB) then writes every
# chunk of the origin once in a random order (first writes: each starts a
# copy of its chunk into every snapshot), then once more (rewrites: no
# copy). One line per case: IOPS of each pass, and the wall time of the
# first pass. Run under -icount (vm-run.sh -i), the figures repeat.
#
# BENCH_IMPLS ("c rust"; "base" is another build of ours, the module
# BENCH_BASE_KO, to compare two versions), BENCH_SNAPS ("1 4 16"),
# BENCH_CHUNKS (sectors, "8"), BENCH_SIZE (MiB, 16), BENCH_ROUNDS (1).

set -euo pipefail
: "${KDIR:?}" "${TOP:?}"
IMPLS=${BENCH_IMPLS:-c rust}
SNAPS=${BENCH_SNAPS:-1 4 16}
CHUNKS=${BENCH_CHUNKS:-8}
SIZE=${BENCH_SIZE:-16}
ROUNDS=${BENCH_ROUNDS:-1}
W=/run/dm-snap-bench-snaps
mkdir -p "$W"
mountpoint -q "$W" || mount -t tmpfs -o size=1200m bench "$W"

. "$TOP/scripts/bench-guest-lib.sh"

iops() { # iops FIO_JSON
	python3 -c 'import json, sys; print("%.1f" % json.load(open(sys.argv[1]))["jobs"][0]["write"]["iops"])' "$1"
}

pass() { # pass NAME BS: one pass of random writes of BS bytes over the origin
	fio --output-format=json --output="$W/$1.json" --name="$1" \
		--filename=/dev/mapper/bs-origin --rw=randwrite --bs="$2" --direct=1 \
		--ioengine=psync --size="${SIZE}M" --numjobs=1 > /dev/null
}

one() { # one IMPL CHUNK N ROUND
	local impl=$1 chunk=$2 n=$3 round=$4 base i cows=() t0 t1 first rewrite
	truncate -s "${SIZE}M" "$W/base.img"
	base=$(losetup --show -f "$W/base.img")
	for i in $(seq "$n"); do
		truncate -s "$((SIZE + SIZE / 16 + 2))M" "$W/cow$i.img"
		cows+=("$(losetup --show -f "$W/cow$i.img")")
	done
	local sectors=$((SIZE * 2048))
	dmsetup create bs-origin --table "0 $sectors snapshot-origin $base"
	for i in $(seq "$n"); do
		dmsetup create "bs-snap$i" --table "0 $sectors snapshot $base ${cows[$((i - 1))]} P $chunk"
	done
	# A write of a whole chunk, at least 4 KiB: each first write copies
	# one chunk.
	local bs=$((chunk * 512 > 4096 ? chunk * 512 : 4096))
	t0=$(date +%s.%N)
	pass first "$bs"
	t1=$(date +%s.%N)
	pass rewrite "$bs"
	first=$(iops "$W/first.json") rewrite=$(iops "$W/rewrite.json")
	printf 'bench-snaps impl=%s chunk=%s bs=%s snapshots=%s round=%s first_iops=%s rewrite_iops=%s first_s=%.2f\n' \
		"$impl" "$chunk" "$bs" "$n" "$round" "$first" "$rewrite" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
	for i in $(seq "$n"); do dmsetup remove "bs-snap$i"; done
	dmsetup remove bs-origin
	for d in "$base" "${cows[@]}"; do losetup -d "$d"; done
	rm -f "$W"/*.img
}

for round in $(seq "$ROUNDS"); do
	for impl in $IMPLS; do
		bench_load "$impl"
		for chunk in $CHUNKS; do
			for n in $SNAPS; do
				one "$impl" "$chunk" "$n" "$round"
			done
		done
		bench_unload "$impl"
	done
done
