#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench-scale: a P snapshot holding 10 k to 1 M exceptions, in runs
# and at random: the kernel memory its exception table takes and the time
# to activate it, C against ours in one guest boot
# (scripts/bench-scale-guest.sh), under -icount. Writes
# bench/results/<date>-<kernel>-scale.md. BENCH_IMPLS, BENCH_BASE_KO,
# BENCH_COUNTS, BENCH_LAYOUTS and BENCH_ROUNDS tune it (see the guest
# script).

. "$(dirname "$0")/lib.sh"

GUEST_VM_OPTS=-i
# The kernel without lockdep (BENCH_FLAVOR=default: the test kernel).
GUEST_FLAVOR=${BENCH_FLAVOR:-bench}
out=$(mktemp /tmp/dm-snap-bench-scale.XXXXXX)
guest_job bench-scale 3600 "BENCH_IMPLS='${BENCH_IMPLS:-c rust}' BENCH_BASE_KO='${BENCH_BASE_KO:-}' \
BENCH_COUNTS='${BENCH_COUNTS:-10000 100000 1000000}' BENCH_LAYOUTS='${BENCH_LAYOUTS:-seq random}' \
BENCH_ROUNDS=${BENCH_ROUNDS:-3} \
bash scripts/bench-scale-guest.sh" > "$out"
cat "$out"
bench_report scale "$TOP/scripts/bench-scale-report.py" "$out"
