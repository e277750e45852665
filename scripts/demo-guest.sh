#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The demo, run inside the guest by scripts/run.sh: load the module, make an
# origin and a snapshot on loop devices, write to the origin and show that
# the snapshot still holds the old data.

set -eu
: "${KDIR:?}" "${TOP:?}"
IMPL=${DM_SNAP_IMPL:-rust}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

if [ "$IMPL" = rust ]; then
	step "Load our module"
	show insmod "$KDIR/drivers/md/dm_snapshot_rs.ko"
	dmesg | grep dm_snapshot_rs | tail -n 2
fi
if ! dmsetup targets | grep -q '^snapshot '; then
	if [ "$IMPL" = rust ]; then
		show dmsetup targets
		echo "(dm_snapshot_rs registers snapshot-origin but not yet snapshot: the rest"
		echo " of the demo uses the C reference dm-snapshot.ko, which cannot load beside it)"
		show rmmod dm_snapshot_rs
	fi
	step "Load the C reference dm-snapshot.ko"
	show insmod "$KDIR/drivers/md/dm-snapshot.ko"
fi
show dmsetup targets

step "Two loop devices on tmpfs: a 64 MiB origin and a 16 MiB COW device"
mkdir -p /tmp/demo
truncate -s 64M /tmp/demo/origin.img
truncate -s 16M /tmp/demo/cow.img
BASE=$(losetup --show -f /tmp/demo/origin.img)
COW=$(losetup --show -f /tmp/demo/cow.img)
SZ=$(blockdev --getsz "$BASE")
echo "origin: $BASE ($SZ sectors), COW: $COW"

step "Fill the origin with 'before' data"
yes 'before the snapshot' | head -c 1M > /tmp/demo/before
show dd if=/tmp/demo/before of="$BASE" bs=1M oflag=direct status=none

step "Map the origin and take a snapshot with 8-sector (4 KiB) chunks"
show dmsetup create demo-origin --table "0 $SZ snapshot-origin $BASE"
# A persistent snapshot where the implementation has that store, else a
# transient one.
if ! dmsetup create demo-snap --table "0 $SZ snapshot $BASE $COW P 8" 2>/dev/null; then
	echo "(no persistent store in this module yet: a transient snapshot instead)"
	show dmsetup create demo-snap --table "0 $SZ snapshot $BASE $COW N 8"
else
	echo "\$ dmsetup create demo-snap --table 0 $SZ snapshot $BASE $COW P 8"
fi
echo "(suspend and resume the origin, as LVM does, so it splits writes at the new chunk size)"
show dmsetup suspend demo-origin
show dmsetup resume demo-origin

step "Write 'after' data to the origin"
yes 'after the snapshot' | head -c 1M > /tmp/demo/after
show dd if=/tmp/demo/after of=/dev/mapper/demo-origin bs=1M oflag=direct status=none

step "The origin now reads:"
dd if=/dev/mapper/demo-origin bs=4k count=1 iflag=direct status=none | head -n 2
step "The snapshot still reads:"
dd if=/dev/mapper/demo-snap bs=4k count=1 iflag=direct status=none | head -n 2
dd if=/dev/mapper/demo-snap bs=1M count=1 iflag=direct status=none | cmp - /tmp/demo/before
echo "snapshot content == data from before the snapshot: OK"

step "dmsetup table and status"
show dmsetup table
show dmsetup status

step "Clean up"
show dmsetup remove demo-snap
show dmsetup remove demo-origin
losetup -d "$BASE" "$COW"
echo "demo done"
