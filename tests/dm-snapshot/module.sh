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

ktap_set_plan 3
run_test "module loads" t_load
run_test "module unloads" t_unload
run_test "module loads and unloads repeatedly" t_reload
