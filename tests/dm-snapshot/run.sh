#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run one group of dm-snapshot selftests in the guest, printing KTAP.
# Usage: DM_SNAP_IMPL=c|rust KDIR=<tree> run.sh GROUP [PHASE]

TOP=$(cd "$(dirname "$0")/../.." && pwd)
export TOP
. "$TOP/tests/dm-snapshot/lib.sh"

group=$1
PHASE=${2:-}
[ -f "$TOP/tests/dm-snapshot/$group.sh" ] || { echo "Bail out! no test group $group"; exit 1; }

# DM_SNAP_NO_UDEV=1 (the debug kernel's run): stop udevd, and let dmsetup
# make its device nodes itself. Under KASAN each uevent's rules take seconds,
# and dmsetup waits for them on every create and remove. udevd must be gone
# for good: without udev sync, a device closed after writing would otherwise
# be opened by the blkid of its change event while a test removes it (EBUSY).
if [ "${DM_SNAP_NO_UDEV:-0}" = 1 ]; then
	stop_udevd
fi

# On a kmemleak kernel, forget what was allocated before the group: only
# what the group leaks is reported at the end.
KMEMLEAK=/sys/kernel/debug/kmemleak
[ -d /sys/kernel/debug/tracing ] || mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
[ -w "$KMEMLEAK" ] && echo clear > "$KMEMLEAK"

ktap_print_header
ktap_print_msg "group $group${PHASE:+ phase $PHASE}, implementation $IMPL ($MOD)"
# Each group file sets its plan and runs its tests through run_test.
. "$TOP/tests/dm-snapshot/$group.sh"
cleanup_devices
unload_impl || ktap_print_msg "could not unload $MOD"
if [ -w "$KMEMLEAK" ]; then
	# Two scans, as kmemleak suggests; any report goes to the kernel log,
	# where the runner's scan fails the group on "unreferenced object".
	echo scan > "$KMEMLEAK"
	echo scan > "$KMEMLEAK"
	# Not "test -s": debugfs files have size 0 whatever they hold.
	leaks=$(cat "$KMEMLEAK")
	# One known leak of the kernel itself is set aside: when an injected
	# allocation failure makes kobject_init_and_add() fail in SLUB's
	# sysfs_slab_add() (a bioset's slab cache, created by dm core when a
	# table loads), the kobject's name is never freed (no kobject_put()).
	# Only the faults group injects such failures, and no frame of ours is
	# in that path. Every other report fails the run.
	known=$(awk '/^unreferenced object/ { n += b; b = 0 } /sysfs_slab_add/ { b = 1 }
		END { print n + b }' <<< "$leaks")
	leaks=$(awk '/^unreferenced object/ { if (blk != "" && blk !~ /sysfs_slab_add/) printf "%s", blk; blk = "" }
		{ blk = blk $0 "\n" } END { if (blk != "" && blk !~ /sysfs_slab_add/) printf "%s", blk }' <<< "$leaks")
	[ "$known" = 0 ] ||
		ktap_print_msg "kmemleak: $known reports of the kernel's sysfs_slab_add() leak on an injected failure, set aside"
	if [ -n "$leaks" ]; then
		ktap_print_msg "kmemleak reports leaks after unloading $MOD"
		# One kernel log record a line.
		while IFS= read -r line; do
			echo "kmemleak: $line" > /dev/kmsg
		done <<< "$leaks"
	fi
fi
ktap_finished
