#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench-profile: where the instructions of a workload go, per kernel
# function and per chunk copied, on C and on ours. Under -icount a
# guest's time is its instruction count, so the difference of the two
# tables is the difference of their times, function by function; sampling
# profilers see little in such a guest (perf's clock samples mostly land
# in, or are lost to, the idle warps).
#
# One guest per implementation, on the benchmark kernel, with QEMU's
# plugin scripts/bench-profile-plugin.c (built once into the cache), runs
# scripts/bench-profile-guest.sh; scripts/bench-profile-report.py then
# prints both tables side by side, largest differences first.
#
# BENCH_PROFILE_WL (origin-seq; or origin-first, snap-write), BENCH_PROFILE_IMPLS
# ("c rust"; base is BENCH_BASE_KO), BENCH_PROFILE_TOP (40 rows),
# BENCH_PROFILE_SNAPS and BENCH_PROFILE_ROUNDS (the guest's), BENCH_SIZE
# (MiB, 64). Counts are kept in ~/.cache/dm-snap-rs/profile/<date>/.

. "$(dirname "$0")/lib.sh"

WL=${BENCH_PROFILE_WL:-origin-seq}
IMPLS=${BENCH_PROFILE_IMPLS:-c rust}
grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ] &&
	die "bench-profile needs TCG (the plugin), and this host would boot KVM"

so=$CACHE/profile/insns.so
src=$TOP/scripts/bench-profile-plugin.c
if [ ! -e "$so" ] || [ "$src" -nt "$so" ]; then
	mkdir -p "$CACHE/profile"
	gcc -O2 -Wall -shared -fPIC -o "$so" "$src" || die "cannot build the plugin"
fi
dir=$CACHE/profile/$(date +%Y%m%d-%H%M%S)
mkdir -p "$dir"
export GUEST_FLAVOR=bench GUEST_VM_OPTS=-i VM_QEMU_OPTS="-plugin $so"
knobs=
for v in BENCH_BASE_KO BENCH_SIZE BENCH_PROFILE_SNAPS BENCH_PROFILE_ROUNDS; do
	[ -z "${!v:-}" ] || knobs+="$v='${!v}' "
done
args=()
for impl in $IMPLS; do
	log "$impl: $WL under the instruction counter"
	INSNS_OUT=$dir/$impl.insns guest_job "profile-$impl" 3600 \
		"env $knobs bash scripts/bench-profile-guest.sh $impl $WL" > "$dir/$impl.out"
	[ -s "$dir/$impl.insns" ] || die "$impl: QEMU wrote no counts (plugin not loaded?)"
	grep -a '^fio:' "$dir/$impl.out" | sed "s/^/$impl /" >&2 || true
	args+=("$impl" "$dir/$impl.insns" "$dir/$impl.out")
done
python3 "$TOP/scripts/bench-profile-report.py" "${BENCH_PROFILE_TOP:-40}" "$WL" "${args[@]}" |
	tee "$dir/report.txt"
log "counts and report: $dir"
