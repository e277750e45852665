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
	dm_remove fail
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

# module_scope TIMES [workers]: from now on failslab fails the allocations
# made with the module under test on the stack (a return address in its
# .text, the stack filter's require-start and -end), the next TIMES of
# them, until module_scope_off; with "workers", only those made by kernel
# workers (task-filter, make-it-fail on every kworker), such as kcopyd's
# completions and the metadata writes, which fail-nth cannot reach.
# scope_failed counts those failed so far (the kernel log does not:
# mempools ask with __GFP_NOWARN).
module_scope() {
	local f=$DBG/failslab start size p
	[ -e "$f/require-start" ] ||
		skip_because "fault injection's stack filter (CONFIG_FAULT_INJECTION_STACKTRACE_FILTER)"
	start=$(cat "/sys/module/$MOD/sections/.text")
	size=$(objdump -h "$KO" | awk '$2 == ".text" { print $3 }')
	[ -n "$size" ] && [ "$((start))" != 0 ] || { echo "no .text for $MOD"; return 1; }
	echo 0 > "$f/probability"
	echo "$start" > "$f/require-start"
	printf '0x%x\n' "$((start + 0x$size))" > "$f/require-end"
	if [ "${2:-}" = workers ]; then
		for p in $(pgrep kworker); do
			echo 1 > "/proc/$p/make-it-fail" 2> /dev/null || true
		done
		echo Y > "$f/task-filter"
	else
		echo N > "$f/task-filter"
	fi
	echo 0 > "$f/space"
	echo 1 > "$f/interval"
	echo "$1" > "$f/times"
	SCOPE_TIMES=$1
	echo 100 > "$f/probability"
}

scope_failed() { echo $((SCOPE_TIMES - $(cat "$DBG/failslab/times"))); }

module_scope_off() {
	local f=$DBG/failslab p
	[ -e "$f/require-start" ] || return 0
	echo 0 > "$f/probability"
	echo 0 > "$f/require-start"
	echo 0xffffffffffffffff > "$f/require-end"
	echo 1 > "$f/times"
	echo N > "$f/task-filter"
	for p in $(pgrep kworker); do
		echo 0 > "/proc/$p/make-it-fail" 2> /dev/null || true
	done
}

# C: persistent_drop_snapshot() writes the invalidated header through
# chunk_io(), an on-stack work item on the store's own WQ_MEM_RECLAIM
# workqueue, which allocates nothing of its own (dm-io's allocations fall
# back on its mempools). So a snapshot that overflows while every
# allocation made from the module fails is invalid on disk as it is live:
# loaded again, it is still invalid, and never a valid snapshot missing
# the overflowing write's copy.
t_invalidate_nomem() {
	need_store P
	fault_setup
	local o s cow n rc=0
	BASE=$(mkloop 8)
	SZ=$(sectors "$BASE")
	pattern A 8 > "$WORK/A"
	write_at "$BASE" "$WORK/A"
	# 64 KiB chunks: the header, one metadata area and 14 data chunks.
	cow=$(mkloop 1)
	o=$(dm origin "0 $SZ snapshot-origin $BASE")
	s=$(dm_snap snap "0 $SZ snapshot $BASE $cow P 128")
	pattern B 1 > "$WORK/B"
	head -c $((14 * 65536)) "$WORK/B" > "$WORK/B14"
	write_at "$o" "$WORK/B14"
	case $(dmsetup status "$DM_PREFIX-snap") in
	*Invalid*) echo "snapshot invalid before it overflowed"; return 1 ;;
	esac
	module_scope 100000
	dd if="$WORK/B" of="$o" bs=64k count=1 seek=20 oflag=direct conv=notrunc status=none || rc=$?
	n=$(scope_failed)
	module_scope_off
	echo "# $n allocations failed while the snapshot overflowed"
	[ "$rc" = 0 ] || { echo "the origin write that overflowed the snapshot failed"; return 1; }
	expect "$(dmsetup status "$DM_PREFIX-snap" | cut -d' ' -f4-)" Invalid "live status"
	dm_remove snap
	dm snap "0 $SZ snapshot $BASE $cow P 128" > /dev/null
	expect "$(dmsetup status "$DM_PREFIX-snap" | cut -d' ' -f4-)" Invalid "status loaded again"
}

# C: pending_complete() allocates the completed exception when the copy
# ends, and if that fails, tries once more with GFP_ATOMIC before it
# invalidates (alloc_completed_exception()); ours takes its nodes from
# blocks of 170, the first allocated with the table, so these completions
# allocate nothing. Each of four origin writes that copy runs with the
# first allocation a worker makes for the module failed (the completion
# runs in kcopyd's worker, the P store's metadata write in a workqueue):
# every copy completes and the snapshot stays valid and correct.
t_complete_nomem() {
	need_store "$1"
	fault_setup
	local o s i n=0 rc=0
	base_and_cow
	o=$(dm origin "0 $SZ snapshot-origin $BASE")
	s=$(dm_snap snap "0 $SZ snapshot $BASE $COW $1 8")
	pattern B 1 > "$WORK/B"
	for i in 1 2 3 4; do
		module_scope 1 workers
		dd if="$WORK/B" of="$o" bs=4k count=1 seek=$((i * 64)) oflag=direct \
			conv=notrunc status=none || rc=$?
		n=$((n + $(scope_failed)))
		module_scope_off
		[ "$rc" = 0 ] || { echo "round $i: the origin write failed"; return 1; }
		case $(dmsetup status "$DM_PREFIX-snap") in
		*Invalid*) echo "round $i: a failed allocation at the copy's end invalidated the snapshot"; return 1 ;;
		esac
	done
	echo "# $n of 4 copies had an allocation failed in a worker"
	same "$s" "$WORK/A"
}

# The completion that needs memory, with its first allocation failed:
# C's every one, ours when a block of nodes is full (170 exceptions, none
# joining another's run: written from the last chunk down, each takes a
# node of its own). As C, ours tries once more with GFP_ATOMIC, and the
# snapshot stays valid and correct.
t_complete_block_nomem() {
	need_store "$1"
	fault_setup
	local o s i n rc=0
	base_and_cow
	o=$(dm origin "0 $SZ snapshot-origin $BASE")
	s=$(dm_snap snap "0 $SZ snapshot $BASE $COW $1 8")
	pattern B 1 > "$WORK/B"
	for i in $(seq 169 -1 0); do
		dd if="$WORK/B" of="$o" bs=4k count=1 seek="$i" oflag=direct conv=notrunc status=none ||
			{ echo "write to chunk $i failed"; return 1; }
	done
	module_scope 1 workers
	dd if="$WORK/B" of="$o" bs=4k count=1 seek=1000 oflag=direct conv=notrunc status=none || rc=$?
	n=$(scope_failed)
	module_scope_off
	[ "$rc" = 0 ] || { echo "the 171st origin write failed"; return 1; }
	[ "$n" = 1 ] || { echo "no allocation failed: nothing was tested"; return 1; }
	case $(dmsetup status "$DM_PREFIX-snap") in
	*Invalid*) echo "a failed allocation at the 171st copy's end invalidated the snapshot"; return 1 ;;
	esac
	same "$s" "$WORK/A"
}

fault_restore() {
	local a
	for a in failslab fail_page_alloc; do
		[ -d "$DBG/$a" ] || continue
		echo Y > "$DBG/$a/ignore-gfp-wait"
		echo 2 > "$DBG/$a/verbose"
	done
}

ktap_set_plan 15
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
run_test "an overflow while the module's allocations fail leaves an invalid header" t_invalidate_nomem
run_test "a failed allocation at a copy's end leaves the snapshot valid (N)" t_complete_nomem N
run_test "a failed allocation at a copy's end leaves the snapshot valid (P)" t_complete_nomem P
run_test "a failed allocation when a completion needs memory leaves the snapshot valid (N)" t_complete_block_nomem N
run_test "a failed allocation when a completion needs memory leaves the snapshot valid (P)" t_complete_block_nomem P
module_scope_off
fault_restore
