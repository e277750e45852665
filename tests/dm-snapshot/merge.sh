# SPDX-License-Identifier: GPL-2.0
# snapshot-merge (issue 13): a persistent snapshot merged back into its
# origin, as "lvconvert --merge" does it: the snapshot and the origin are
# suspended, the origin's table is replaced by a snapshot-merge table on
# the snapshot's COW device, which takes the snapshot's exceptions over
# when it resumes, and the snapshot is removed.
#
# Every test compares the origin after the merge with the snapshot's
# content before it (and with the writes made meanwhile): with the origin
# idle; under writes, with a second snapshot that must keep its content;
# with that second snapshot's table reloaded (a handover) in the middle;
# stopped by a suspend and by a table reload (the merge then goes on from
# the metadata on disk); and stopped by an error injected with dm-flakey
# under the COW device ("Merge failed", I/O goes on), then taken up again
# by a new table. Two tables are refused, as C refuses them: a merge of a
# transient store, and a second merging snapshot of one origin.
#
# DM_SNAP_MERGE_DELAY_MS: the delay of the COW device in the tests that
# interrupt a merge, which makes each merge step slow enough to stop in
# the middle (default 100).

load_impl
MERGE_DELAY=${DM_SNAP_MERGE_DELAY_MS:-100}

# status_of NAME: the status of dmst-NAME past the target name.
status_of() { dmsetup status "$DM_PREFIX-$1" | cut -d' ' -f4-; }

# setup_merge: BASE, a 16 MiB loop device holding pattern A, ORIGIN a
# snapshot-origin over it, COWDEV (dmst-cow) a linear device over a 24 MiB
# loop device COWLOOP, and S1 a P snapshot on it with three kinds of
# exceptions: 2 MiB of origin writes at 1 MiB (copies of A, consecutive:
# long runs), 1 MiB of snapshot writes at 8 MiB, and 256 blocks of 4 KiB
# written to the snapshot at 12 MiB from the last one back (consecutive in
# neither device: one merge step each). $WORK/snap is the snapshot's
# content, $WORK/orig the origin's.
setup_merge() {
	need_target snapshot-origin
	need_target snapshot
	need_target snapshot-merge
	BASE=$(mkloop 16)
	SZ=$(sectors "$BASE")
	pattern A 16 > "$WORK/A"
	write_at "$BASE" "$WORK/A"
	ORIGIN=$(dm origin "0 $SZ snapshot-origin $BASE")
	COWLOOP=$(mkloop 24)
	CS=$(sectors "$COWLOOP")
	COWDEV=$(dm cow "0 $CS linear $COWLOOP 0")
	S1=$(dm_snap s1 "0 $SZ snapshot $BASE $COWDEV P 8")
	pattern B 2 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B" 1024
	pattern C 1 > "$WORK/C"
	write_at "$S1" "$WORK/C" 8192
	pattern D 1 > "$WORK/D"
	write_backwards "$S1" "$WORK/D" 12288
	dd if="$S1" of="$WORK/snap" bs=64k iflag=direct status=none
	dd if="$ORIGIN" of="$WORK/orig" bs=64k iflag=direct status=none
	echo "# snapshot before the merge: $(status_of s1)"
}

# cow_table KIND: replace the COW device's table: linear, delay (reads and
# writes delayed by MERGE_DELAY ms) or failing (dm-flakey, always down:
# every I/O fails).
cow_table() {
	local t
	case $1 in
	linear) t="0 $CS linear $COWLOOP 0" ;;
	delay) t="0 $CS delay $COWLOOP 0 $MERGE_DELAY" ;;
	failing) t="0 $CS flakey $COWLOOP 0 0 60" ;;
	esac
	dmsetup suspend "$DM_PREFIX-cow"
	dmsetup reload "$DM_PREFIX-cow" --table "$t"
	dmsetup resume "$DM_PREFIX-cow"
}

# start_merge: as lvconvert --merge: s1 and the origin suspended, the
# origin's table replaced by snapshot-merge, which takes s1's exceptions
# over on resume; s1 is removed.
start_merge() {
	dmsetup suspend "$DM_PREFIX-s1"
	dmsetup suspend "$DM_PREFIX-origin"
	dmsetup reload "$DM_PREFIX-origin" --table "0 $SZ snapshot-merge $BASE $COWDEV P 8"
	dmsetup resume "$DM_PREFIX-origin"
	dm_remove s1
}

# merge_table KIND: replace the origin's table by snapshot-origin (which
# ends the merge table and its merge) or by snapshot-merge (which reads
# the exceptions left on the COW device and merges them).
merge_table() {
	local t="0 $SZ snapshot-origin $BASE"
	[ "$1" = snapshot-origin ] || t="0 $SZ snapshot-merge $BASE $COWDEV P 8"
	dmsetup suspend "$DM_PREFIX-origin"
	dmsetup reload "$DM_PREFIX-origin" --table "$t"
	dmsetup resume "$DM_PREFIX-origin"
}

# used: the sectors the merging snapshot still has allocated.
used() { status_of origin | awk '{ split($1, u, "/"); print u[1] }'; }

# wait_merged SECONDS: until the status says every exception is merged
# (<sectors_allocated> equals <metadata_sectors>).
wait_merged() {
	local st
	for _ in $(seq $((${1:-120} * 5))); do
		st=$(status_of origin)
		case $st in
		Invalid* | Merge*) echo "merge status: $st"; dmesg | tail -n 5; return 1 ;;
		esac
		if [ "$(awk '{ split($1, u, "/"); print (u[1] == $2) }' <<< "$st")" = 1 ]; then
			echo "# merged: $st"
			return 0
		fi
		sleep 0.2
	done
	echo "merge not done after ${1:-120} s: $st"
	return 1
}

# wait_progress: until the merge has merged something and is not done.
wait_progress() {
	local start=$1 now
	for _ in $(seq 300); do
		now=$(used)
		if [ "$now" -lt "$start" ]; then
			echo "# merging: $now of $start sectors left"
			return 0
		fi
		sleep 0.1
	done
	echo "no merge progress in 30 s: $(status_of origin)"
	return 1
}

# no_progress: the merge does not go on (two samples a second apart).
no_progress() {
	local a b
	a=$(used)
	sleep 1
	b=$(used)
	expect "$b" "$a" "sectors allocated a second after the merge stopped"
}

# C: the merge copies the exceptions back, from the newest, in runs of
# consecutive chunks; the status counts down until the metadata alone is
# left, and the origin then holds what the snapshot did.
t_idle() {
	setup_merge
	start_merge
	wait_merged 300
	same "$ORIGIN" "$WORK/snap"
	same "$BASE" "$WORK/snap"
	# A merged snapshot-merge is the origin: writes go straight there.
	pattern E 1 > "$WORK/E"
	write_at "$ORIGIN" "$WORK/E" 8192
	splice "$WORK/snap" "$WORK/E" 8192 > "$WORK/exp"
	same "$BASE" "$WORK/exp"
}

# C: during the merge, writes to chunks not yet merged go to the COW device
# (and are merged later), writes to the chunks being merged wait until they
# are, the others go to the origin after the other snapshots copied the
# chunk; s2, a second snapshot of the origin, keeps its content while the
# merge overwrites the origin.
t_writes() {
	setup_merge
	local cow2 s2 i
	cow2=$(mkloop 24)
	s2=$(dm_snap s2 "0 $SZ snapshot $BASE $cow2 P 8")
	cow_table delay
	start_merge
	pattern E 4 > "$WORK/E"
	cp "$WORK/snap" "$WORK/exp"
	# 64 KiB blocks over exceptions of every kind and over chunks with
	# none, while the merge runs.
	# (at 64 KiB past 1, 2, 8 and 12 MiB: exceptions; 5 and 15 MiB: none)
	for i in 1 2 5 8 12 15; do
		dd if="$WORK/E" of="$ORIGIN" bs=64k skip="$i" seek=$((i * 16 + 1)) count=1 \
			oflag=direct conv=notrunc status=none &
		dd if="$WORK/E" of="$WORK/exp" bs=64k skip="$i" seek=$((i * 16 + 1)) count=1 \
			conv=notrunc status=none
	done
	wait
	echo "# writes done: $(status_of origin)"
	cow_table linear
	wait_merged 300
	same "$ORIGIN" "$WORK/exp"
	same "$BASE" "$WORK/exp"
	same "$s2" "$WORK/orig"
}

# C: presuspend stops the merge (stop_merge()), resume starts it again.
t_suspend() {
	setup_merge
	local start
	cow_table delay
	start=$(status_of s1 | awk '{ split($1, u, "/"); print u[1] }')
	start_merge
	wait_progress "$start"
	dmsetup suspend "$DM_PREFIX-origin"
	echo "# suspended: $(status_of origin)"
	no_progress
	dmsetup resume "$DM_PREFIX-origin"
	cow_table linear
	wait_merged 300
	same "$ORIGIN" "$WORK/snap"
}

# C: a table reload ends the merge table; the metadata on disk stays
# consistent, and a new snapshot-merge table goes on from it.
t_reload() {
	setup_merge
	local start st
	cow_table delay
	start=$(status_of s1 | awk '{ split($1, u, "/"); print u[1] }')
	start_merge
	wait_progress "$start"
	merge_table snapshot-origin
	echo "# merge table replaced"
	# The COW device stays slow until the new table's status is read: on
	# a fast one the rest of the merge can be over before dmsetup status
	# runs.
	merge_table snapshot-merge
	st=$(status_of origin)
	echo "# merge table again: $st"
	# Stopped in the middle: exceptions are left to merge.
	if [ "$(awk '{ split($1, u, "/"); print (u[1] > $2) }' <<< "$st")" != 1 ]; then
		echo "the merge was over before the reload: $st"
		return 1
	fi
	cow_table linear
	wait_merged 300
	same "$ORIGIN" "$WORK/snap"
	same "$BASE" "$WORK/snap"
}

# C: snapshot_resume() of another snapshot of the origin, taking over the
# exceptions of its old table (lvextend of it) while the origin merges,
# stops the merge, hands over, and starts the merge again. The merge goes
# on to the end, and the chunks it merges after the handover are copied
# into the new table of s2 first: s2 keeps its content.
#
# C restarts the merge before it makes the new table active (s->active
# = 1 comes last in snapshot_resume()): the first chunks merged after the
# restart are copied into neither table, and s2 reads them from the
# merged origin. That loss is C's, and is reported, not failed, on C;
# ours makes the new table active in the step that hands over.
t_handover() {
	setup_merge
	local cow2 s2 start
	cow2=$(mkloop 24)
	s2=$(dm_snap s2 "0 $SZ snapshot $BASE $cow2 P 8")
	cow_table delay
	start=$(status_of s1 | awk '{ split($1, u, "/"); print u[1] }')
	start_merge
	wait_progress "$start"
	dmsetup suspend "$DM_PREFIX-s2"
	dmsetup reload "$DM_PREFIX-s2" --table "0 $SZ snapshot $BASE $cow2 P 8"
	dmsetup resume "$DM_PREFIX-s2"
	echo "# s2 handed over: $(status_of origin)"
	cow_table linear
	wait_merged 300
	same "$ORIGIN" "$WORK/snap"
	if [ "$IMPL" = c ] && ! cmp -s "$s2" "$WORK/orig"; then
		echo "# C: s2 lost $(cmp -l "$s2" "$WORK/orig" | awk '{ print int(($1 - 1) / 4096) }' |
			uniq | wc -l) blocks of 4 KiB merged while the new table was not active"
		return 0
	fi
	same "$s2" "$WORK/orig"
}

# C: an I/O error stops the merge (merge_callback(): "shutting down
# merge"), the status says "Merge failed" and I/O goes on; a new table
# takes the merge up where the metadata on disk says.
t_error() {
	setup_merge
	local start st
	cow_table delay
	start=$(status_of s1 | awk '{ split($1, u, "/"); print u[1] }')
	start_merge
	wait_progress "$start"
	cow_table failing
	for _ in $(seq 100); do
		st=$(status_of origin)
		[ "$st" != "Merge failed" ] || break
		sleep 0.2
	done
	expect "$st" "Merge failed" "status after the COW device failed"
	# The origin's chunks with no exception are still served: 4 MiB at
	# 4 MiB never had one.
	dd if="$ORIGIN" of="$WORK/mid" bs=64k skip=64 count=64 iflag=direct status=none
	dd if="$WORK/A" bs=64k skip=64 count=64 status=none | cmp - "$WORK/mid"
	cow_table linear
	merge_table snapshot-origin
	merge_table snapshot-merge
	wait_merged 300
	same "$ORIGIN" "$WORK/snap"
}

# C: snapshot_ctr() refuses a snapshot-merge table on a transient store,
# which cannot merge.
t_refuse_transient() {
	need_target snapshot-merge
	local base cow sz
	base=$(mkloop 4)
	sz=$(sectors "$base")
	cow=$(mkloop 4)
	dm_reject merge "0 $sz snapshot-merge $base $cow N 8" \
		"Snapshot exception store does not support snapshot-merge."
}

# C: __validate_exception_handover() lets one snapshot of an origin merge
# at a time: while s1 merges, a snapshot-merge table that would take s2's
# exceptions over is refused, and s2 goes on as a snapshot.
t_refuse_second() {
	need_target snapshot-origin
	need_target snapshot
	need_target snapshot-merge
	local base sz cow1 cow2 s2
	base=$(mkloop 4)
	sz=$(sectors "$base")
	pattern A 4 > "$WORK/A"
	write_at "$base" "$WORK/A"
	ORIGIN=$(dm origin "0 $sz snapshot-origin $base")
	cow1=$(mkloop 4)
	cow2=$(mkloop 4)
	dm_snap s1 "0 $sz snapshot $base $cow1 P 8" > /dev/null
	s2=$(dm_snap s2 "0 $sz snapshot $base $cow2 P 8")
	pattern B 1 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B" 1024
	dmsetup suspend "$DM_PREFIX-s1"
	dmsetup suspend "$DM_PREFIX-origin"
	dmsetup reload "$DM_PREFIX-origin" --table "0 $sz snapshot-merge $base $cow1 P 8"
	dmsetup resume "$DM_PREFIX-origin"
	dm_remove s1
	dmsetup suspend "$DM_PREFIX-s2"
	dmesg -C
	if dmsetup reload "$DM_PREFIX-s2" --table "0 $sz snapshot-merge $base $cow2 P 8" 2>/dev/null; then
		echo "a second merging snapshot of the origin was accepted"
		return 1
	fi
	if ! dmesg | grep -qF "A snapshot is already merging."; then
		echo "expected 'A snapshot is already merging.' in the kernel log, got:"
		dmesg | tail -n 5
		return 1
	fi
	dmsetup resume "$DM_PREFIX-s2"
	same "$s2" "$WORK/A"
}

ktap_set_plan 8
run_test "merge with the origin idle" t_idle
run_test "merge under origin writes, a second snapshot kept" t_writes
run_test "merge stopped by suspend, resumed" t_suspend
run_test "merge stopped by a table reload, taken up by a new table" t_reload
run_test "another snapshot of the origin handed over while it merges" t_handover
run_test "merge error injected with dm-flakey: Merge failed, then merged" t_error
run_test "snapshot-merge on a transient store refused" t_refuse_transient
run_test "a second merging snapshot of an origin refused" t_refuse_second
