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
t_autoload() {
	local rel root helper old base cow t rc=0
	unload_impl
	rmmod "$OTHER_MOD" 2> /dev/null || true
	rel=$(uname -r)
	root=$WORK/modroot
	rm -rf "$root"
	mkdir -p "$root/lib/modules/$rel/updates"
	cp "$KO" "$root/lib/modules/$rel/updates/"
	depmod -b "$root" "$rel"
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

ktap_set_plan 5
run_test "module loads" t_load
run_test "module unloads" t_unload
run_test "module loads and unloads repeatedly" t_reload
run_test "module refuses to load beside the other implementation" t_conflict
run_test "dmsetup create loads the module on demand" t_autoload
