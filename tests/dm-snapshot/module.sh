# SPDX-License-Identifier: GPL-2.0
# Module load and unload: proves the chain build -> module -> guest.

t_load() {
	dmesg -C
	load_impl
	grep -qw "^$MOD" /proc/modules
	if [ "$IMPL" = rust ]; then
		dmesg | grep -q 'dm_snapshot_rs: loaded'
	fi
}

t_unload() {
	load_impl
	dmesg -C
	unload_impl
	! grep -qw "^$MOD" /proc/modules
	if [ "$IMPL" = rust ]; then
		dmesg | grep -q 'dm_snapshot_rs: unloaded'
	fi
}

t_reload() {
	local i
	for i in 1 2 3; do
		load_impl
		unload_impl
	done
}

# The other implementation of the same targets.
if [ "$IMPL" = rust ]; then
	OTHER_MOD=dm_snapshot OTHER_KO=$KDIR/drivers/md/dm-snapshot.ko
else
	OTHER_MOD=dm_snapshot_rs OTHER_KO=$KDIR/drivers/md/dm_snapshot_rs.ko
fi

# Only one module can provide the targets: with the other loaded, ours
# refuses to load with a clear reason, and the other keeps working.
t_conflict() {
	[ -f "$OTHER_KO" ] || skip_because "$OTHER_KO not built"
	unload_impl
	insmod "$OTHER_KO"
	dmesg -C
	if load_impl 2>/dev/null; then
		rmmod "$OTHER_MOD"
		echo "$MOD loaded while $OTHER_MOD provides the targets"
		return 1
	fi
	# C registers "snapshot" first, ours "snapshot-origin".
	dmesg | grep -qE "'snapshot(-origin)?' target already registered"
	dmsetup targets | grep -q '^snapshot-origin '
	local base
	base=$(mkloop 4)
	dm origin "0 $(sectors "$base") snapshot-origin $base" >/dev/null
	cleanup_devices
	rmmod "$OTHER_MOD"
}

# A table that names a target nobody has registered makes the device
# mapper ask for "dm-<target>" (request_module()). dm-snapshot.ko answers
# to "dm-snapshot" by its name and to the other two by MODULE_ALIAS(); ours
# by its aliases. The module is installed as modules_install does it
# (lib/modules/<release>/updates, then depmod) under a root of the test's
# own, which the kernel's modprobe helper is pointed at; the other
# implementation is not there. Then "dmsetup create" alone loads it, for
# each of the three targets.
#
# modroot: installs the module under test, as modules_install does it, in
# a root of the test's own, and prints the root.
modroot() {
	local rel root=$WORK/modroot
	rel=$(uname -r)
	rm -rf "$root"
	mkdir -p "$root/lib/modules/$rel/updates"
	cp "$KO" "$root/lib/modules/$rel/updates/"
	depmod -b "$root" "$rel"
	echo "$root"
}

t_autoload() {
	local root helper old base cow t rc=0
	unload_impl
	rmmod "$OTHER_MOD" 2> /dev/null || true
	root=$(modroot)
	helper=$WORK/modprobe
	printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "$root" > "$helper"
	chmod +x "$helper"
	old=$(cat /proc/sys/kernel/modprobe)
	echo "$helper" > /proc/sys/kernel/modprobe
	base=$(mkloop 4)
	cow=$(mkloop 2)
	for t in "snapshot-origin $base" "snapshot $base $cow P 8" "snapshot-merge $base $cow P 8"; do
		unload_impl
		if ! echo "0 $(sectors "$base") $t" | dmsetup create "$DM_PREFIX-auto"; then
			echo "dmsetup create of a ${t%% *} table did not load $MOD"
			rc=1
		elif ! grep -qw "^$MOD" /proc/modules; then
			echo "a ${t%% *} table loaded, but not by $MOD"
			rc=1
		else
			echo "# ${t%% *}: $MOD loaded on demand"
		fi
		dmsetup remove "$DM_PREFIX-auto" 2> /dev/null || true
	done
	echo "$old" > /proc/sys/kernel/modprobe
	return "$rc"
}

# LVM2 does not wait for the kernel's request: before it loads a snapshot
# table, lvcreate -s runs modprobe dm-snapshot itself. Its modprobe (the
# one lvm was built with, /sbin/modprobe) is, in a mount namespace of the
# test's own, one that looks in the test's module root; the kernel's
# request, made in the guest's own namespace, finds nothing. lvcreate -s
# alone must load the module, and the snapshot must keep the old data.
t_autoload_lvm() {
	command -v lvcreate > /dev/null || skip_because "no lvcreate"
	local root kmod pv vg=${DM_PREFIX}avg rc=0
	unload_impl
	rmmod "$OTHER_MOD" 2> /dev/null || true
	root=$(modroot)
	kmod=$(readlink -f /sbin/modprobe)
	cp "$kmod" "$WORK/kmod"
	printf '#!/bin/bash\nexec -a modprobe %s -d %s "$@"\n' "$WORK/kmod" "$root" > "$WORK/lvm-modprobe"
	chmod +x "$WORK/lvm-modprobe"
	lvm_private
	pv=$(mkloop 64)
	pattern A 4 > "$WORK/A"
	pattern B 1 > "$WORK/B"
	# shellcheck disable=SC2016
	unshare -m --propagation private bash -euc '
		mount --bind "$1" "$2"
		shift 2
		vg=$1 pv=$2 A=$3 B=$4
		q() { "$@" -q 3>&- 4>&- 5>&- 6>&- > /dev/null; }
		q pvcreate "$pv"
		q vgcreate "$vg" "$pv"
		q lvcreate -n lv -L 8M -Zn -y "$vg" 2> /dev/null
		dd if="$A" of="/dev/$vg/lv" oflag=direct bs=64k status=none
		q lvcreate -s -n snap -L 4M -y "$vg/lv"
		dd if="$B" of="/dev/$vg/lv" oflag=direct bs=64k status=none
		cmp -n "$(stat -c %s "$A")" "$A" "/dev/$vg/snap"
		q lvremove -f "$vg/snap"
		q vgremove -f "$vg"
	' lvm-autoload "$WORK/lvm-modprobe" "$kmod" "$vg" "$pv" "$WORK/A" "$WORK/B" || rc=$?
	if [ $rc != 0 ]; then
		vgremove -f "$vg" > /dev/null 2>&1 || true
		echo "lvcreate -s of an LVM2 snapshot failed with the module not loaded ($rc)"
		return 1
	fi
	grep -qw "^$MOD" /proc/modules || { echo "the LVM2 snapshot worked, but $MOD is not loaded"; return 1; }
	echo "# lvcreate -s: $MOD loaded by LVM2's modprobe"
}

ktap_set_plan 6
run_test "module loads" t_load
run_test "module unloads" t_unload
run_test "module loads and unloads repeatedly" t_reload
run_test "module refuses to load beside the other implementation" t_conflict
run_test "dmsetup create loads the module on demand" t_autoload
run_test "lvcreate -s loads the module on demand" t_autoload_lvm
