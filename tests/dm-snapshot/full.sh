# SPDX-License-Identifier: GPL-2.0
# A full COW device: Invalid for P and N, Overflow for PO; the origin goes on.

load_impl

# t_full STORE EXPECTED_STATUS WRITE_TO(origin|snapshot)
t_full() {
	need_store "$1"
	need_target snapshot-origin
	need_target snapshot
	local base cow sz o s
	base=$(mkloop 8)
	cow=$(mkloop 1)
	sz=$(sectors "$base")
	o=$(dm origin "0 $sz snapshot-origin $base")
	s=$(dm_snap snap "0 $sz snapshot $base $cow $1 8")
	# 4 MiB of changes cannot fit a 1 MiB COW device.
	pattern B 4 > "$WORK/B"
	if [ "$3" = origin ]; then
		write_at "$o" "$WORK/B"
	elif write_at "$s" "$WORK/B" 2>/dev/null; then
		echo "4 MiB written to a snapshot with a 1 MiB COW device"
		return 1
	fi
	expect "$(dmsetup status "$DM_PREFIX-snap" | cut -d' ' -f4-)" "$2" "status"
	# The origin keeps working.
	pattern C 8 > "$WORK/C"
	write_at "$o" "$WORK/C"
	same "$o" "$WORK/C"
	same "$base" "$WORK/C"
	if [ "$2" = Invalid ]; then
		# An invalid snapshot fails I/O.
		if dd if="$s" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
			echo "read from an invalid snapshot succeeded"
			return 1
		fi
	fi
}

# C: PO reports Overflow when writes to the snapshot itself fill the COW
# device; a copy for an origin write that does not fit invalidates it.
ktap_set_plan 6
run_test "COW full by origin writes invalidates N snapshot" t_full N Invalid origin
run_test "COW full by origin writes invalidates P snapshot" t_full P Invalid origin
run_test "COW full by origin writes invalidates PO snapshot" t_full PO Invalid origin
run_test "COW full by snapshot writes invalidates N snapshot" t_full N Invalid snapshot
run_test "COW full by snapshot writes invalidates P snapshot" t_full P Invalid snapshot
run_test "COW full by snapshot writes overflows PO snapshot" t_full PO Overflow snapshot
