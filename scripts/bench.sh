#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The COW throttle benchmark (scripts/bench-guest.sh), C against ours in one
# guest boot. BENCH_SECONDS, BENCH_THRESHOLD (default 2), BENCH_READ_DELAY
# and BENCH_FOLLOW_AFTER tune it (see bench-guest.sh).

. "$(dirname "$0")/lib.sh"

"$TOP/scripts/setup.sh"
. "$TOP/scripts/lib.sh"
KDIR=$("$TOP/scripts/build-kernel.sh")
"$TOP/scripts/build-module.sh" "$KDIR" >/dev/null
out=$(mktemp -d /tmp/dm-snap-bench.XXXXXX)
log "benchmark in the guest; console log: $out/console"
rc=0
"$TOP/scripts/vm-run.sh" -t 900 -o "$out" "$KDIR" -- \
	"cd $TOP && BENCH_SECONDS=${BENCH_SECONDS:-30} BENCH_THRESHOLD=${BENCH_THRESHOLD:-2} BENCH_FOLLOW_AFTER=${BENCH_FOLLOW_AFTER:-0} KDIR=$KDIR TOP=$TOP bash scripts/bench-guest.sh" || rc=$?
cat "$out/stdout"
[ $rc = 0 ] || die "benchmark failed (status $rc); console: $out/console"
