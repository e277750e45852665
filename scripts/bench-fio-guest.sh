#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Guest side of make bench: the fio workloads of the benchmark of record,
# on C, on ours and on the references (the raw device, dm-linear, a dm-thin
# snapshot), one after the other in one boot, on the same devices.
#
# Devices: an origin of BENCH_SIZE MiB, filled before each case, and one
# COW device per snapshot, loop devices on a tmpfs; P snapshots, all taken
# before the first write. fio psync, direct. Workloads, each on fresh
# devices where it needs them:
#   origin-first    writes of one chunk (at least 4 KiB) at random over the
#                   whole origin, each chunk once: each copies its chunk
#                   into every snapshot
#   origin-rewrite  the same once more: no copy
#   snap-read       4 KiB random reads of the snapshot after those writes,
#                   every chunk remapped to the COW device
#   origin-seq      256 KiB sequential writes over a fresh origin
#   snap-write      4 KiB random writes over a fresh snapshot, each block
#                   once
#   origin-first-slow  origin-first with COW devices that take
#                   BENCH_COW_DELAY ms (2) more for each write and flush
#                   (dm-delay, whose timer rounds up to the next tick), as
#                   disks do: a commit then waits for I/O rather than for
#                   the CPU. 4 KiB chunks, over the first BENCH_SLOW_SIZE
#                   MiB (1) of the origin; C and ours only.
# The references: raw and linear run the same writes and reads on the
# device itself (first and rewrite are the same for them); thin is a
# thin volume of the pool's block size (64 KiB, the least dm-thin takes,
# so it runs in the 64 KiB chunk rows only) with its snapshots, the
# writes breaking their sharing.
# One line a case: "bench mode=... impl=... wl=... chunk=... snaps=...
# jobs=... round=... iops=... mibps=... p99_ms=...", mode the guest's
# (BENCH_MODE: icount, one vCPU counting instructions; mttcg, several).
#
# BENCH_IMPLS ("c rust"; "base" is another build of ours, BENCH_BASE_KO),
# BENCH_REFS ("raw linear thin"), BENCH_CHUNKS (sectors, "8 128"),
# BENCH_SNAPS ("1 4 16": origin-first/rewrite; the other workloads run
# with one), BENCH_JOBS ("1": with more, each job writes its own slice;
# for guests with several vCPUs), BENCH_SIZE (MiB, 16), BENCH_ROUNDS (3,
# cases with one snapshot), BENCH_SNAP_ROUNDS (1, cases with more).

set -euo pipefail
: "${KDIR:?}" "${TOP:?}"
IMPLS=${BENCH_IMPLS:-c rust}
REFS=${BENCH_REFS:-raw linear thin}
CHUNKS=${BENCH_CHUNKS:-8 128}
SNAPS=${BENCH_SNAPS:-1 4 16}
JOBS=${BENCH_JOBS:-1}
SIZE=${BENCH_SIZE:-16}
ROUNDS=${BENCH_ROUNDS:-3}
SNAP_ROUNDS=${BENCH_SNAP_ROUNDS:-1}
MODE=${BENCH_MODE:-icount}
COW_DELAY=${BENCH_COW_DELAY-2}
SLOW_SIZE=${BENCH_SLOW_SIZE:-1}
THIN_BLOCK=128 # sectors: dm-thin's least block size
W=/run/dm-snap-bench
mkdir -p "$W"
mountpoint -q "$W" || mount -t tmpfs -o size=1000m bench "$W"
SECTORS=$((SIZE * 2048))

. "$TOP/scripts/bench-guest-lib.sh"

DMS=()
loop() { # loop NAME MIB: a loop device over a new file, filled if FILL=1
	truncate -s "$2M" "$W/$1.img"
	[ "${FILL:-0}" = 0 ] || dd if=/dev/zero of="$W/$1.img" bs=1M count="$2" conv=notrunc status=none
	losetup --show -f "$W/$1.img"
}
dm() { # dm NAME TABLE
	dmsetup create "$1" --table "$2"
	DMS=("$1" "${DMS[@]}")
}
# The devices of a case, and their files. loop runs in a command
# substitution, a subshell: its loop devices are found by their files.
teardown() {
	local d f
	for d in "${DMS[@]}"; do dmsetup remove --retry "$d"; done
	for f in "$W"/*.img; do
		[ -e "$f" ] || continue
		for d in $(losetup -j "$f" | cut -d: -f1); do losetup -d "$d"; done
		rm -f "$f"
	done
	DMS=()
}

# fio_pass NAME DEV RW BS: one pass over DEV (each block once for random
# writes), split in JOBS slices; prints "iops mibps p99_ms".
fio_pass() {
	local name=$1 dev=$2 rw=$3 bs=$4 jobs=$5
	fio --output-format=json --output="$W/$name.json" --name="$name" \
		--filename="$dev" --rw="$rw" --bs="$bs" --direct=1 --ioengine=psync \
		--numjobs="$jobs" --size=$((SIZE / jobs))M --offset_increment=$((SIZE / jobs))M \
		--group_reporting > /dev/null
	python3 - "$W/$name.json" <<-'PY'
	import json, sys
	j = json.load(open(sys.argv[1]))["jobs"][0]
	d = j["write"] if j["write"]["total_ios"] else j["read"]
	p99 = d["clat_ns"]["percentile"]["99.000000"] / 1e6
	print(f"{d['iops']:.1f} {d['bw_bytes'] / 2**20:.2f} {p99:.3f}")
	PY
}

emit() { # emit IMPL WL CHUNK SNAPS JOBS ROUND "IOPS MIBPS P99"
	local r
	read -r -a r <<< "$7"
	echo "bench mode=$MODE impl=$1 wl=$2 chunk=$3 snaps=$4 jobs=$5 round=$6 iops=${r[0]} mibps=${r[1]} p99_ms=${r[2]}"
}

# The devices of one case: ORIGIN and SNAP (the first snapshot) set.
setup() { # setup KIND CHUNK N
	local kind=$1 chunk=$2 n=$3 base i cow meta data
	case $kind in
	raw)	ORIGIN=$(FILL=1 loop base "$SIZE") SNAP=$ORIGIN ;;
	linear)	base=$(FILL=1 loop base "$SIZE")
		dm bf-linear "0 $SECTORS linear $base 0"
		ORIGIN=/dev/mapper/bf-linear SNAP=$ORIGIN ;;
	thin)	meta=$(loop meta 16)
		data=$(loop data $((SIZE * 3)))
		dm bf-pool "0 $((SIZE * 3 * 2048)) thin-pool $meta $data $THIN_BLOCK 0 1 skip_block_zeroing"
		dmsetup message bf-pool 0 "create_thin 0"
		dm bf-thin "0 $SECTORS thin /dev/mapper/bf-pool 0"
		dd if=/dev/zero of=/dev/mapper/bf-thin bs=1M count="$SIZE" oflag=direct status=none
		for i in $(seq "$n"); do
			dmsetup suspend bf-thin
			dmsetup message bf-pool 0 "create_snap $i 0"
			dmsetup resume bf-thin
		done
		dm bf-tsnap "0 $SECTORS thin /dev/mapper/bf-pool 1"
		ORIGIN=/dev/mapper/bf-thin SNAP=/dev/mapper/bf-tsnap ;;
	*)	base=$(FILL=1 loop base "$SIZE")
		dm bf-origin "0 $SECTORS snapshot-origin $base"
		for i in $(seq "$n"); do
			cow=$(loop "cow$i" $((SIZE + SIZE / 16 + 2)))
			if [ -n "${DELAY:-}" ]; then
				dm "bf-slow$i" "0 $(blockdev --getsz "$cow") delay $cow 0 0 $cow 0 $DELAY"
				cow=/dev/mapper/bf-slow$i
			fi
			dm "bf-snap$i" "0 $SECTORS snapshot $base $cow P $chunk"
		done
		# As LVM2 does: the origin splits its writes at the snapshots'
		# least chunk size, which it learns when it resumes (C:
		# origin_resume()); made before the snapshots, it would let a
		# write of several chunks copy only its first.
		dmsetup suspend bf-origin
		dmsetup resume bf-origin
		ORIGIN=/dev/mapper/bf-origin SNAP=/dev/mapper/bf-snap1 ;;
	esac
}

# case_origin KIND CHUNK N JOBS ROUND: origin-first, origin-rewrite and,
# with one snapshot, snap-read.
case_origin() {
	local kind=$1 chunk=$2 n=$3 jobs=$4 round=$5
	local bs=$((chunk * 512 > 4096 ? chunk * 512 : 4096))
	setup "$kind" "$chunk" "$n"
	emit "$kind" origin-first "$chunk" "$n" "$jobs" "$round" "$(fio_pass first "$ORIGIN" randwrite "$bs" "$jobs")"
	emit "$kind" origin-rewrite "$chunk" "$n" "$jobs" "$round" "$(fio_pass rewrite "$ORIGIN" randwrite "$bs" "$jobs")"
	[ "$n" != 1 ] ||
		emit "$kind" snap-read "$chunk" "$n" "$jobs" "$round" "$(fio_pass read "$SNAP" randread 4k "$jobs")"
	teardown
}

# case_fresh KIND CHUNK JOBS ROUND: origin-seq and snap-write, each on
# fresh devices with one snapshot.
case_fresh() {
	local kind=$1 chunk=$2 jobs=$3 round=$4
	setup "$kind" "$chunk" 1
	emit "$kind" origin-seq "$chunk" 1 "$jobs" "$round" "$(fio_pass seq "$ORIGIN" write 256k "$jobs")"
	teardown
	setup "$kind" "$chunk" 1
	emit "$kind" snap-write "$chunk" 1 "$jobs" "$round" "$(fio_pass swrite "$SNAP" randwrite 4k "$jobs")"
	teardown
}

# case_slow IMPL N ROUND: origin-first-slow.
case_slow() {
	local impl=$1 n=$2 round=$3 size=$SIZE
	DELAY=$COW_DELAY setup "$impl" 8 "$n"
	SIZE=$SLOW_SIZE
	emit "$impl" origin-first-slow 8 "$n" 1 "$round" "$(fio_pass slow "$ORIGIN" randwrite 4k 1)"
	SIZE=$size
	teardown
}

runs_of() { # runs_of N: the rounds of a case with N snapshots
	if [ "$1" = 1 ]; then seq "$ROUNDS"; else seq "$SNAP_ROUNDS"; fi
}

for impl in $REFS $IMPLS; do
	case $impl in raw | linear | thin) ;; *) bench_load "$impl" ;; esac
	for chunk in $CHUNKS; do
		# dm-thin's blocks are 64 KiB at least.
		[ "$impl" != thin ] || [ "$chunk" -ge "$THIN_BLOCK" ] || continue
		for jobs in $JOBS; do
			for n in $SNAPS; do
				# The references have no snapshots but thin's.
				case $impl in raw | linear) [ "$n" = 1 ] || continue ;; esac
				for round in $(runs_of "$n"); do
					case_origin "$impl" "$chunk" "$n" "$jobs" "$round"
				done
			done
			for round in $(runs_of 1); do
				case_fresh "$impl" "$chunk" "$jobs" "$round"
			done
		done
	done
	case $impl in
	raw | linear | thin) ;;
	*)	if [ -n "$COW_DELAY" ] && [ "$JOBS" = 1 ]; then
			for n in $SNAPS; do
				for round in $(runs_of "$n"); do
					case_slow "$impl" "$n" "$round"
				done
			done
		fi
		bench_unload "$impl" ;;
	esac
done
