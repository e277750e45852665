#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench-snaps: origin writes with 1, 4 and 16 snapshots of one origin,
# C against ours in one guest boot (scripts/bench-snaps-guest.sh), under
# -icount (one vCPU whose time counts instructions: the figures repeat
# whatever the host does). Writes bench/results/<date>-<kernel>-snaps.md:
# each case's IOPS on both and ours/C. BENCH_SNAPS, BENCH_CHUNKS,
# BENCH_SIZE and BENCH_ROUNDS tune it (see the guest script).

. "$(dirname "$0")/lib.sh"

GUEST_VM_OPTS=-i
out=$(mktemp /tmp/dm-snap-bench-snaps.XXXXXX)
guest_job bench-snaps 5400 "BENCH_SNAPS='${BENCH_SNAPS:-1 4 16}' BENCH_CHUNKS='${BENCH_CHUNKS:-8}' \
BENCH_SIZE=${BENCH_SIZE:-16} BENCH_ROUNDS=${BENCH_ROUNDS:-1} bash scripts/bench-snaps-guest.sh" > "$out"
cat "$out"
bench_report snaps "$TOP/scripts/bench-snaps-report.py" "$out"
