# SPDX-License-Identifier: GPL-2.0
# Differential testing against C: seeded random sequences of snapshot
# commands and I/O, each run on the C dm-snapshot and on ours in one boot,
# every read's hash, status and table line, refused command's errno and
# table's reason compared (diff.py). A difference prints the seed and the
# shortest sequence found that still shows one.
# DM_SNAP_DIFF_SEQUENCES sequences (make soak: more) of DM_SNAP_DIFF_OPS
# operations, from seed DM_SNAP_DIFF_SEED on. The group is the same
# whichever implementation is under test.

C_KO=$KDIR/drivers/md/dm-snapshot.ko
RUST_KO=${DM_SNAP_KO:-$KDIR/drivers/md/dm_snapshot_rs.ko}
DIFF=$TOP/tests/dm-snapshot/diff.py
DIFF_SEQUENCES=${DM_SNAP_DIFF_SEQUENCES:-200}
DIFF_OPS=${DM_SNAP_DIFF_OPS:-24}
DIFF_SEED=${DM_SNAP_DIFF_SEED:-$RANDOM}

# udevd is stopped while the group runs, and started again after it. The
# group's commands turn udev's device-mapper rules off (dmioctl.py), but
# udev still starts processes for them (dmsetup, to read the flags and to
# answer the cookie, twice a resume or remove), and under TCG these cost
# more than the commands: without udevd the group runs twice as fast. The
# group makes its own device nodes, and dmsetup its own without udev.

t_diff() {
	[ -f "$C_KO" ] || skip_because "$C_KO not built"
	# The module under test is loaded again at the end, as run.sh expects.
	trap 'cleanup_devices; for m in dm_snapshot dm_snapshot_rs; do rmmod $m 2> /dev/null || true; done; load_impl; start_udevd' EXIT
	stop_udevd
	local base cows=() i
	base=$(mkloop 2)
	for i in 0 1 2; do
		cows+=("$(mkloop 4)")
	done
	if grep -q '^CONFIG_KASAN=y' "$KDIR/.config"; then
		export DM_SNAP_KASAN=1
	fi
	echo "# seeds $DIFF_SEED to $((DIFF_SEED + DIFF_SEQUENCES - 1)) (DM_SNAP_DIFF_SEED)"
	python3 "$DIFF" run "$C_KO" "$RUST_KO" "$DIFF_SEQUENCES" "$DIFF_OPS" "$DIFF_SEED" "$base" "${cows[@]}"
}

ktap_set_plan 1
run_test "diff: random sequences give the same answers on C and ours" t_diff
