#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Guest side of make bench-scale: the memory and activation time of a P
# snapshot holding many exceptions, C against ours, on the same COW images.
#
# For each layout (seq: runs of consecutive chunks; random: none) and each
# count of exceptions, bench-scale-image.py writes a COW image (4 KiB
# chunks) on a tmpfs, and each implementation in turn activates a snapshot
# of it over a dm-zero origin: the device's create, its table load (which
# reads the metadata) and its resume, timed around their ioctls alone
# (bench-scale-create.py). Memory is the kernel's own accounting in
# /proc/meminfo: unreclaimable slab (C's dm_exception cache, our kmalloc
# nodes) and vmalloc (the hash tables, when large), before the create and
# after it; the snapshot of an empty COW device is measured first, and its
# cost (the fixed per-snapshot allocations) is what "bytes per exception"
# leaves out. One line per case and round. Run under -icount (vm-run.sh
# -i), guest time counts instructions; udevd is stopped first, so that no
# rule's work runs beside a create.
#
# BENCH_IMPLS ("c rust"; "base" is another build of ours, the module
# BENCH_BASE_KO, to compare two versions), BENCH_COUNTS ("10000 100000
# 1000000"), BENCH_LAYOUTS ("seq random"), BENCH_ROUNDS (3: activations
# of each image by each implementation).

set -euo pipefail
: "${KDIR:?}" "${TOP:?}"
IMPLS=${BENCH_IMPLS:-c rust}
COUNTS=${BENCH_COUNTS:-10000 100000 1000000}
LAYOUTS=${BENCH_LAYOUTS:-seq random}
ROUNDS=${BENCH_ROUNDS:-3}
W=/run/dm-snap-bench-scale
mkdir -p "$W"
mountpoint -q "$W" || mount -t tmpfs -o size=1200m bench "$W"
# dmsetup makes its own nodes and waits for no udev rule, and no rule runs:
# the create is timed, not udev.
export DM_DISABLE_UDEV=1
udevadm control --exit 2> /dev/null || true
pkill -x systemd-udevd 2> /dev/null || true
rm -f /run/udev/control

. "$TOP/scripts/bench-guest-lib.sh"

# meminfo: unreclaimable slab and vmalloc, in KiB, once the freed objects
# of RCU callbacks are gone.
meminfo() {
	sync
	sleep 1
	awk '/^SUnreclaim:/ { s = $2 } /^VmallocUsed:/ { v = $2 } END { print s, v }' /proc/meminfo
}

# one IMPL LAYOUT N IMAGE ORIGIN_SECTORS ROUND
one() {
	local impl=$1 layout=$2 n=$3 img=$4 osz=$5 round=$6 cow s0 v0 s1 v1 t st
	cow=$(losetup --show -f "$img")
	dmsetup create bsc-origin --table "0 $osz zero"
	read -r s0 v0 < <(meminfo)
	t=$(python3 "$TOP/scripts/bench-scale-create.py" bsc-snap "$osz" snapshot "/dev/mapper/bsc-origin $cow P 8")
	read -r s1 v1 < <(meminfo)
	st=$(dmsetup status bsc-snap | cut -d' ' -f4-)
	printf 'bench-scale impl=%s layout=%s n=%s round=%s create_s=%.3f slab_kib=%s vmalloc_kib=%s status=%s\n' \
		"$impl" "$layout" "$n" "$round" "$t" \
		$((s1 - s0)) $((v1 - v0)) "${st// /_}"
	dmsetup remove bsc-snap
	dmsetup remove bsc-origin
	losetup -d "$cow"
}


# The fixed cost: a snapshot of a COW device with a header and no
# exception.
python3 "$TOP/scripts/bench-scale-image.py" "$W/cow.img" 0 seq 1 > /dev/null
for impl in $IMPLS; do
	bench_load "$impl"
	for round in $(seq "$ROUNDS"); do
		one "$impl" empty 0 "$W/cow.img" 8192 "$round"
	done
	bench_unload "$impl"
done
for layout in $LAYOUTS; do
	for n in $COUNTS; do
		osz=$(python3 "$TOP/scripts/bench-scale-image.py" "$W/cow.img" "$n" "$layout" 1)
		for impl in $IMPLS; do
			bench_load "$impl"
			for round in $(seq "$ROUNDS"); do
				one "$impl" "$layout" "$n" "$W/cow.img" "$osz" "$round"
			done
			bench_unload "$impl"
		done
	done
done
rm -f "$W/cow.img"
