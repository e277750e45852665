#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The main job: install what is needed, build the kernel and the module,
# boot the guest and run the snapshot demo in it.

. "$(dirname "$0")/lib.sh"

"$TOP/scripts/setup.sh"
# Again: set-up may just have installed the toolchain lib.sh looks for.
. "$TOP/scripts/lib.sh"
KDIR=$("$TOP/scripts/build-kernel.sh")
"$TOP/scripts/build-module.sh" "$KDIR" >/dev/null
out=$(mktemp -d /tmp/dm-snap-run.XXXXXX)
log "booting the guest (QEMU, $(grep -qwE 'vmx|svm' /proc/cpuinfo && echo KVM || echo TCG)); console log: $out/console"
rc=0
"$TOP/scripts/vm-run.sh" -t 300 -o "$out" "$KDIR" -- \
	"cd $TOP && DM_SNAP_IMPL=${DM_SNAP_IMPL:-rust} KDIR=$KDIR TOP=$TOP bash scripts/demo-guest.sh" || rc=$?
cat "$out/stdout"
[ $rc = 0 ] || die "demo failed (status $rc); console: $out/console"
