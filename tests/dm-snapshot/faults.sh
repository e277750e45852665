# SPDX-License-Identifier: GPL-2.0
# Error paths: allocation failures injected one at a time (fail-nth, the
# N-th fault-injection point of the task fails) while a table loads and
# while writes need copies, and I/O errors injected on the COW device
# (fail_make_request). Each must end in a clear error or an invalidated
# snapshot; the runner fails the group on any splat in the kernel log and,
# on the debug kernel, on KASAN reports and on leaks kmemleak finds after
# the module is unloaded.

load_impl

DBG=/sys/kernel/debug
FAIL_NTH="python3 $TOP/tests/dm-snapshot/fail_nth.py"

# Let failslab and fail_page_alloc fail sleeping and order-0 allocations
# too, with one log line per injected failure (no stack dump).
fault_setup() {
	[ -w /proc/thread-self/fail-nth ] || skip_because "fault injection (CONFIG_FAULT_INJECTION)"
	[ -d "$DBG/failslab" ] || skip_because "failslab (CONFIG_FAILSLAB, debugfs)"
	local a
	for a in failslab fail_page_alloc; do
		[ -d "$DBG/$a" ] || continue
		echo N > "$DBG/$a/ignore-gfp-wait"
		echo 1 > "$DBG/$a/verbose"
	done
	[ ! -d "$DBG/fail_page_alloc" ] || echo 0 > "$DBG/fail_page_alloc/min-order"
}

# base_and_cow: 8 MiB origin holding pattern A (also in $WORK/A) and an
# 8 MiB COW device, in BASE, COW and SZ.
base_and_cow() {
	BASE=$(mkloop 8)
	COW=$(mkloop 8)
	SZ=$(sectors "$BASE")
	pattern A 8 > "$WORK/A"
	write_at "$BASE" "$WORK/A"
}

# t_load_failures TARGET STORE: a snapshot (or origin) table loaded with
# each allocation point failed in turn is either refused or loaded; after
# all of them the target works. DM_SNAP_FAULT_STEP=K fails only every K-th
# point (the debug kernel's run, where each point takes a second).
t_load_failures() {
	need_store "$2"
	fault_setup
	local o s params
	base_and_cow
	case $1 in
	snapshot) params="$BASE $COW $2 16" ;;
	*) params=$BASE ;;
	esac
	dmsetup create "$DM_PREFIX-fail" --notable
	$FAIL_NTH load "$DM_PREFIX-fail" 3000 "$SZ" "$1" "$params" "${DM_SNAP_FAULT_STEP:-1}" |
		sed 's/^/# /'
	[ "${PIPESTATUS[0]}" = 0 ]
	dmsetup remove "$DM_PREFIX-fail"
	# Still working: a snapshot keeps the old data while the origin changes.
	o=$(dm origin "0 $SZ snapshot-origin $BASE")
	s=$(dm_snap snap "0 $SZ snapshot $BASE $COW $2 16")
	pattern B 1 > "$WORK/B"
	write_at "$o" "$WORK/B" 1024
	same "$s" "$WORK/A"
}

# t_write_failures STORE WRITE_TO(origin|snapshot): writes that need copies,
# each with one allocation point failed in turn, all succeed (the I/O path
# allocates from mempools); the snapshot stays valid and correct.
t_write_failures() {
	need_store "$1"
	fault_setup
	local o s
	base_and_cow
	o=$(dm origin "0 $SZ snapshot-origin $BASE")
	s=$(dm_snap snap "0 $SZ snapshot $BASE $COW $1 16")
	if [ "$2" = origin ]; then
		$FAIL_NTH write "$o" 400 8192 | sed 's/^/# /'
		[ "${PIPESTATUS[0]}" = 0 ]
		same "$s" "$WORK/A"
	else
		$FAIL_NTH write "$s" 400 8192 | sed 's/^/# /'
		[ "${PIPESTATUS[0]}" = 0 ]
		same "$o" "$WORK/A"
	fi
	case $(dmsetup status "$DM_PREFIX-snap") in
	*Invalid*) echo "snapshot invalidated by allocation failures"; return 1 ;;
	esac
}

# t_cow_io_error STORE: the COW device fails every request (fail_make_request
# on its loop device): the next copy invalidates the snapshot with C's
# message, the origin write that caused it succeeds, and the snapshot then
# fails I/O.
t_cow_io_error() {
	need_store "$1"
	[ -d "$DBG/fail_make_request" ] || skip_because "fail_make_request (CONFIG_FAIL_MAKE_REQUEST)"
	local o s f=$DBG/fail_make_request
	base_and_cow
	o=$(dm origin "0 $SZ snapshot-origin $BASE")
	s=$(dm_snap snap "0 $SZ snapshot $BASE $COW $1 16")
	pattern B 1 > "$WORK/B"
	write_at "$o" "$WORK/B"
	dmesg -C
	echo 1 > "/sys/block/$(basename "$COW")/make-it-fail"
	echo 100 > "$f/probability"
	echo 1 > "$f/interval"
	echo -1 > "$f/times"
	echo 0 > "$f/verbose"
	local rc=0
	write_at "$o" "$WORK/B" 4096 || rc=$?
	echo 0 > "/sys/block/$(basename "$COW")/make-it-fail"
	echo 0 > "$f/probability"
	[ $rc = 0 ] || { echo "origin write failed with the COW device failing"; return 1; }
	expect "$(dmsetup status "$DM_PREFIX-snap" | cut -d' ' -f4-)" Invalid "status"
	dmesg | grep -q "Invalidating snapshot: Error reading/writing" ||
		{ echo "no invalidation message:"; dmesg | tail -n 5; return 1; }
	splice "$WORK/A" "$WORK/B" 0 > "$WORK/AB"
	splice "$WORK/AB" "$WORK/B" 4096 > "$WORK/ABB"
	same "$o" "$WORK/ABB"
	if dd if="$s" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
		echo "read from an invalid snapshot succeeded"
		return 1
	fi
}

fault_restore() {
	local a
	for a in failslab fail_page_alloc; do
		[ -d "$DBG/$a" ] || continue
		echo Y > "$DBG/$a/ignore-gfp-wait"
		echo 2 > "$DBG/$a/verbose"
	done
}

ktap_set_plan 10
run_test "allocation failures while loading a snapshot-origin table" t_load_failures snapshot-origin N
run_test "allocation failures while loading an N snapshot table" t_load_failures snapshot N
run_test "allocation failures while loading a P snapshot table" t_load_failures snapshot P
run_test "allocation failures in origin writes that copy (N)" t_write_failures N origin
run_test "allocation failures in snapshot writes that copy (N)" t_write_failures N snapshot
run_test "allocation failures in origin writes that copy (P)" t_write_failures P origin
run_test "allocation failures in snapshot writes that copy (P)" t_write_failures P snapshot
run_test "COW device I/O errors invalidate an N snapshot" t_cow_io_error N
run_test "COW device I/O errors invalidate a P snapshot" t_cow_io_error P
run_test "COW device I/O errors invalidate a PO snapshot" t_cow_io_error PO
fault_restore
