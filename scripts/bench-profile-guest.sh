#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Guest side of make bench-profile: one workload of the benchmark on one
# implementation, BENCH_PROFILE_ROUNDS times (2) on fresh devices, under
# the instruction-counting plugin; then the kernel's symbols, for the
# report to name the code that ran.
#
# Usage: bench-profile-guest.sh IMPL WORKLOAD
#   origin-seq    256 KiB sequential writes over a fresh origin, 4 KiB
#                 chunks: every chunk copied, one commit per write
#   origin-first  4 KiB random first writes, each chunk once, with
#                 BENCH_PROFILE_SNAPS (1) snapshots
#   snap-write    4 KiB random writes to the (first) snapshot, each chunk
#                 once: whole-chunk writes that need no copy
# Output: "### units N", the chunks copied (each copy once per snapshot;
# snap-write: the chunks written),
# by which the report divides; "### kallsyms" and /proc/kallsyms.

set -euo pipefail
: "${KDIR:?}" "${TOP:?}"
impl=$1 wl=$2
SIZE=${BENCH_SIZE:-64}
ROUNDS=${BENCH_PROFILE_ROUNDS:-2}
SNAPS=${BENCH_PROFILE_SNAPS:-1}
W=/run/dm-snap-profile
mkdir -p "$W"
mountpoint -q "$W" || mount -t tmpfs -o size=1000m profile "$W"
. "$TOP/scripts/bench-guest-lib.sh"

loop() { # loop NAME MIB
	truncate -s "$2M" "$W/$1.img"
	losetup --show -f "$W/$1.img"
}

dev=bp-origin
case $wl in
origin-seq) rw=write bs=256k ;;
origin-first) rw=randwrite bs=4k ;;
snap-write) rw=randwrite bs=4k dev=bp-snap1 ;;
*) echo "unknown workload $wl" >&2; exit 2 ;;
esac

bench_load "$impl"
for _ in $(seq "$ROUNDS"); do
	base=$(loop base "$SIZE")
	dd if=/dev/zero of="$base" bs=1M count="$SIZE" oflag=direct status=none
	dmsetup create bp-origin --table "0 $((SIZE * 2048)) snapshot-origin $base"
	for i in $(seq "$SNAPS"); do
		cow=$(loop "cow$i" $((SIZE + SIZE / 16 + 2)))
		dmsetup create "bp-snap$i" --table "0 $((SIZE * 2048)) snapshot $base $cow P 8"
	done
	# The origin splits its writes at the chunk size it learns at resume.
	dmsetup suspend bp-origin
	dmsetup resume bp-origin
	fio --name=profile --filename="/dev/mapper/$dev" --rw="$rw" --bs="$bs" \
		--direct=1 --ioengine=psync --size="${SIZE}M" \
		--output-format=terse | cut -d';' -f 48,49 |
		sed 's/^\([^;]*\);/fio: write KiB\/s \1, IOPS /'
	for i in $(seq "$SNAPS"); do dmsetup remove "bp-snap$i"; done
	dmsetup remove bp-origin
	for f in "$W"/*.img; do
		for d in $(losetup -j "$f" | cut -d: -f1); do losetup -d "$d"; done
		rm -f "$f"
	done
done
echo "### units $((ROUNDS * SNAPS * SIZE * 256))"
# With the module loaded, so that its functions are named.
echo 0 > /proc/sys/kernel/kptr_restrict
echo "### kallsyms"
cat /proc/kallsyms
bench_unload "$impl"
