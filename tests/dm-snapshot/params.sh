# SPDX-License-Identifier: GPL-2.0
# Module parameters under /sys/module/<module>/parameters/.

load_impl

# t_param NAME DEFAULT
t_param() {
	need_param "$1"
	local f=/sys/module/$MOD/parameters/$1 old
	expect "$(stat -c %a "$f")" 644 "mode of $f"
	old=$(cat "$f")
	expect "$old" "$2" "default of $1"
	echo 17 > "$f"
	expect "$(cat "$f")" 17 "$1 after writing 17"
	if echo -1 > "$f" 2>/dev/null; then
		echo "$1 accepted -1"
		return 1
	fi
	echo "$old" > "$f"
	expect "$(cat "$f")" "$old" "$1 restored"
}

ktap_set_plan 2
run_test "snapshot_cow_threshold visible and writable" t_param snapshot_cow_threshold 2048
run_test "snapshot_copy_throttle visible and writable" t_param snapshot_copy_throttle 100
