#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Fuzz the kernel-independent logic with cargo fuzz (libFuzzer) and print
# the run's exec count and result.
# Usage: fuzz.sh [SECONDS] [TARGET]   (default 60 s, disk_metadata; the
# targets: disk_metadata, the on-disk parser; exception_runs, the exception
# runs against a model)

. "$(dirname "$0")/lib.sh"

secs=${1:-60}
target=${2:-disk_metadata}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz --version 0.13.2 >/dev/null 2>&1 ||
	die "cargo install cargo-fuzz failed"

cd "$TOP/host"
log=$(mktemp /tmp/dm-snap-fuzz.XXXXXX)
# rustup's toolchain (lib.sh points RUSTC at Debian's, for the kernel); it
# is stable, and cargo fuzz needs -Z flags.
if env -u RUSTC -u RUSTDOC RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$secs" -max_len=65536 \
	> "$log" 2>&1; then
	result=ok
else
	result=FAILED
	tail -n 40 "$log"
fi
runs=$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$log" | tail -n1)
echo "fuzz: $target: ${runs:-?} execs in ${secs}s, result $result (log: $log)"
[ $result = ok ]
