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
	OTHER_MOD=dm_snapshot_rs OTHER_KO=$TOP/drivers/md/dm_snapshot_rs.ko
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

ktap_set_plan 4
run_test "module loads" t_load
run_test "module unloads" t_unload
run_test "module loads and unloads repeatedly" t_reload
run_test "module refuses to load beside the other implementation" t_conflict
