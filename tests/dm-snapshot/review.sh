# SPDX-License-Identifier: GPL-2.0
# Defects a review of the Rust target found against C (issue 12).
#
# Each test checks one behaviour of the C target (drivers/md/dm-snap.c of
# Linux 6.12), named in the comment above it: the dm event on invalidation,
# the exception handover between two tables on one COW device (cancelled
# when the source goes, refused for the source's own resume and for a third
# table), concurrent table loads on one COW device, snapshot reads racing
# an origin write of the same chunk (and not of others), the read-only open
# of the snapshot's origin, a COW device that grew under a live table, a
# handover under origin writes, the COW throttle slot given back when the
# copy ends, and the lock order as lockdep sees it.
#
# DM_SNAP_REVIEW_ROUNDS sets the rounds of the concurrent-create test
# (default 6), DM_SNAP_REVIEW_DELAY_MS the read delay of the read/write
# race test (default 8000), and DM_SNAP_REVIEW_BUSY_SECONDS and
# DM_SNAP_REVIEW_RESUME_LIMIT_MS the writers and the resume limit of the
# handover under writes (defaults 40 and 15000), DM_SNAP_REVIEW_BUSY_RATE the
# copies a second it waits for before the reload (default 50),
# DM_SNAP_REVIEW_COMMIT_DELAY_MS
# how long the slot test holds a metadata write (default 8000).

load_impl
ROUNDS=${DM_SNAP_REVIEW_ROUNDS:-6}

# setup_origin MIB: BASE, a loop device of MIB MiB holding pattern A (also
# in $WORK/A), SZ its size in sectors, and ORIGIN, a snapshot-origin over it.
setup_origin() {
	need_target snapshot-origin
	need_target snapshot
	BASE=$(mkloop "$1")
	SZ=$(sectors "$BASE")
	pattern A "$1" > "$WORK/A"
	write_at "$BASE" "$WORK/A"
	ORIGIN=$(dm origin "0 $SZ snapshot-origin $BASE")
}

# status_of NAME: the status of dmst-NAME past the target name.
status_of() { dmsetup status "$DM_PREFIX-$1" | cut -d' ' -f4-; }

# events_of NAME: the event number of dmst-NAME.
events_of() { dmsetup info -c --noheadings -o events "$DM_PREFIX-$1" | tr -d ' '; }

# in_log TEXT: the kernel log has TEXT.
in_log() {
	if ! dmesg | grep -qF -- "$1"; then
		echo "expected '$1' in the kernel log, got:"
		dmesg | tail -n 5
		return 1
	fi
}

# C: __invalidate_snapshot() calls dm_table_event(), so whoever waits on
# the snapshot's events (dmeventd, "dmsetup wait") learns that it failed.
t_invalid_event() {
	setup_origin 8
	local cow before after
	cow=$(mkloop 1)
	dm_snap s1 "0 $SZ snapshot $BASE $cow N 8" > /dev/null
	before=$(events_of s1)
	# 4 MiB of changes cannot fit a 1 MiB COW device.
	pattern B 4 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B"
	expect "$(status_of s1)" Invalid "status"
	after=$(events_of s1)
	echo "# event number $before before the overflow, $after after"
	if [ "$after" -le "$before" ]; then
		echo "no dm event when the snapshot was invalidated (event number $before, then $after)"
		return 1
	fi
}

# handover_pair: s1, a P snapshot of ORIGIN on COW, live, with exceptions
# (1 MiB of pattern B written through the origin at 1 MiB), and s2, a
# device with the same table loaded but inactive: a handover destination.
# TABLE is that table.
handover_pair() {
	setup_origin 8
	COW=$(mkloop 8)
	TABLE="0 $SZ snapshot $BASE $COW P 8"
	S1=$(dm_snap s1 "$TABLE")
	pattern B 1 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B" 1024
	same "$S1" "$WORK/A"
	dmsetup create "$DM_PREFIX-s2" --notable
	dmsetup load "$DM_PREFIX-s2" --table "$TABLE"
}

# C: snapshot_dtr() of a handover source with a destination waiting marks
# the destination invalid ("Cancelling snapshot handover."): it never read
# the COW device's metadata, so it must not come up as a valid snapshot.
t_handover_cancelled() {
	handover_pair
	dmesg -C
	dm_remove s1
	in_log "Cancelling snapshot handover."
	dmsetup resume "$DM_PREFIX-s2"
	expect "$(status_of s2)" Invalid "status of the destination after its source was removed"
	# The origin goes on.
	pattern C 1 > "$WORK/C"
	write_at "$ORIGIN" "$WORK/C"
	same "$ORIGIN" "$WORK/C"
}

# C: snapshot_preresume() refuses to resume the source of a pending
# handover ("Unable to resume snapshot source until handover completes.");
# the destination resumes once the source is suspended and takes over its
# exceptions (snapshot_resume(), __handover_exceptions()).
t_handover_source_resume() {
	handover_pair
	dmsetup suspend "$DM_PREFIX-s1"
	dmesg -C
	if dmsetup resume "$DM_PREFIX-s1" 2> /dev/null; then
		echo "the handover source resumed while a destination was waiting"
		return 1
	fi
	in_log "Unable to resume snapshot source until handover completes."
	dmsetup resume "$DM_PREFIX-s2"
	same "/dev/mapper/$DM_PREFIX-s2" "$WORK/A"
	# __handover_exceptions() leaves the source invalid.
	expect "$(status_of s1)" Invalid "status of the source after the handover"
	# The destination is the origin's snapshot now.
	pattern C 1 > "$WORK/C"
	write_at "$ORIGIN" "$WORK/C" 4096
	same "/dev/mapper/$DM_PREFIX-s2" "$WORK/A"
}

# C: after a completed handover both tables stay registered on the COW
# device (the source suspended, until it is removed), and
# __validate_exception_handover() refuses a third table there
# (__find_snapshots_sharing_cow() counts 2).
t_third_table() {
	handover_pair
	dmsetup suspend "$DM_PREFIX-s1"
	dmsetup resume "$DM_PREFIX-s2"
	dm_reject s3 "$TABLE" "Snapshot cow pairing for exception table handover failed"
	same "/dev/mapper/$DM_PREFIX-s2" "$WORK/A"
}

# C: register_snapshot() validates the handover and adds the snapshot to
# its origin under _origins_lock, before the metadata is read, so of two
# tables loaded at once on one fresh COW device the second sees the first:
# as an inactive table (pairing refused) or as a live one (a handover
# destination whose resume is refused while the source is not suspended).
# At most one comes up live. The COW device's reads are delayed (dm-delay,
# 300 ms) so that the constructors' metadata reads overlap.
t_concurrent_create() {
	need_target snapshot
	need_target delay
	need_store P
	local round base cowloop cow sz d live pa pb zero=0 one=0 two=0
	base=$(mkloop 4)
	cowloop=$(mkloop 4)
	sz=$(sectors "$base")
	cow=$(dm cow "0 $(sectors "$cowloop") delay $cowloop 0 300 $cowloop 0 0")
	for round in $(seq "$ROUNDS"); do
		# A fresh COW device: no header.
		dd if=/dev/zero of="$cowloop" bs=64k count=1 oflag=direct status=none
		dmsetup create "$DM_PREFIX-a" --table "0 $sz snapshot $base $cow P 8" > /dev/null 2>&1 &
		pa=$!
		dmsetup create "$DM_PREFIX-b" --table "0 $sz snapshot $base $cow P 8" > /dev/null 2>&1 &
		pb=$!
		wait "$pa" || true
		wait "$pb" || true
		live=0
		for d in a b; do
			if dmsetup table "$DM_PREFIX-$d" 2> /dev/null | grep -q ' snapshot '; then
				live=$((live + 1))
			fi
		done
		case $live in
		0) zero=$((zero + 1)) ;;
		1) one=$((one + 1)) ;;
		*) two=$((two + 1)) ;;
		esac
		for d in b a; do
			if dmsetup info "$DM_PREFIX-$d" > /dev/null 2>&1; then
				dmsetup remove --retry "$DM_PREFIX-$d" > /dev/null
			fi
		done
	done
	echo "# $ROUNDS rounds: $one with one live table, $zero with none, $two with two"
	if [ "$two" != 0 ]; then
		echo "two live tables on one COW device in $two of $ROUNDS rounds"
		return 1
	fi
}

# C: a snapshot read of a chunk without a completed exception goes to the
# origin and is tracked (track_chunk()); pending_complete() keeps the
# pending exception until the tracked reads of its chunk drained
# (__check_for_conflicting_io()), so an origin write to that chunk waits
# on it and cannot change the data under a snapshot read in flight.
#
# The chunk (32 sectors at 5 MiB) sits behind dm-delay, its reads delayed
# by DELAY ms (DM_SNAP_REVIEW_DELAY_MS); the rest of the origin is linear,
# so udev's probes stay fast (the chunk is not at 4 MiB, where blkid looks
# for a LUKS2 secondary header). The steps follow the reads dm-delay holds
# (the first number of its status), not the clock, which under TCG runs
# late: W1, an origin write of pattern B, needs a copy, whose read is held;
# 3/8 DELAY later R, a snapshot read, finds the chunk pending, goes to the
# origin and is held too; once the copy's read has gone, W2 writes pattern C
# to the origin while R is still held. R must read pattern A. (Under a
# loaded TCG host each step starts up to 2-3 s late: the margins are about
# DELAY/2 either side.)
REVIEW_DELAY=${DM_SNAP_REVIEW_DELAY_MS:-8000}

# held_reads: the reads dm-delay holds for the chunk.
held_reads() { dmsetup status "$DM_PREFIX-delay" | awk '$3 == "delay" { print $4 }'; }

# wait_held OP N [SECONDS]: wait (at most SECONDS, default 30) until dm-delay
# holds OP N reads of the chunk (OP: -eq, -gt).
wait_held() {
	local end=$((SECONDS + ${3:-30}))
	while [ "$SECONDS" -le "$end" ]; do
		[ "$(held_reads)" "$1" "$2" ] && return 0
		sleep 0.1
	done
	echo "dm-delay never held $1 $2 reads (holds $(held_reads))"
	return 1
}

# held_chunk BASE AT CHUNK: dmst-delay over BASE, which holds the reads of
# its CHUNK sectors at AT for REVIEW_DELAY ms (the rest plain), ORIGIN a
# snapshot-origin over it and SNAP an N snapshot of it with chunks of
# CHUNK sectors.
held_chunk() {
	local base=$1 at=$2 chunk=$3 sz dly
	sz=$(sectors "$base")
	printf '%s\n' "0 $at linear $base 0" \
		"$at $chunk delay $base $at $REVIEW_DELAY $base $at 0" \
		"$((at + chunk)) $((sz - at - chunk)) linear $base $((at + chunk))" |
		dmsetup create "$DM_PREFIX-delay"
	dly=/dev/mapper/$DM_PREFIX-delay
	ORIGIN=$(dm origin "0 $sz snapshot-origin $dly")
	SNAP=$(dm_snap s1 "0 $sz snapshot $dly $(mkloop 4) N $chunk")
	wait_held -eq 0
}

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

t_read_vs_overwrite() {
	need_target snapshot-origin
	need_target snapshot
	need_target delay
	local base t0 pw1 pr rc=0 held copy
	local chunk=32 at=10240
	base=$(mkloop 8)
	pattern A 8 > "$WORK/A"
	write_at "$base" "$WORK/A"
	# The chunk's first 4 KiB in A, B and C.
	tail -c +$((at * 512 + 1)) "$WORK/A" | head -c 4096 > "$WORK/A4"
	pattern B 1 | head -c 4096 > "$WORK/B4"
	pattern C 1 | head -c 4096 > "$WORK/C4"
	held_chunk "$base" "$at" "$chunk"
	t0=$(date +%s%N)
	dd if="$WORK/B4" of="$ORIGIN" bs=4k count=1 oflag=direct,seek_bytes seek=$((at * 512)) \
		conv=notrunc status=none &
	pw1=$!
	wait_held -gt 0
	# The copy's read, in one bio or more.
	copy=$(held_reads)
	echo "# copy read held at $(ms_since "$t0") ms ($copy bios)"
	sleep "$(awk -v d="$REVIEW_DELAY" 'BEGIN { print d * 3 / 8000 }')"
	dd if="$SNAP" of="$WORK/R" bs=4k count=1 iflag=direct,skip_bytes skip=$((at * 512)) \
		status=none &
	pr=$!
	if ! wait_held -eq $((copy + 1)) $((REVIEW_DELAY / 1000)); then
		echo "the copy's read was gone before R came: raise DM_SNAP_REVIEW_DELAY_MS"
		return 1
	fi
	echo "# R held at $(ms_since "$t0") ms"
	wait_held -eq 1
	echo "# copy read gone at $(ms_since "$t0") ms"
	# The copy's write to the COW device and its completion.
	sleep 0.2
	dd if="$WORK/C4" of="$ORIGIN" bs=4k count=1 oflag=direct,seek_bytes seek=$((at * 512)) \
		conv=notrunc status=none
	held=$(held_reads)
	echo "# W2 done at $(ms_since "$t0") ms, R still held: $held"
	wait "$pr" || rc=$?
	echo "# R done at $(ms_since "$t0") ms"
	wait "$pw1"
	echo "# W1 done at $(ms_since "$t0") ms"
	[ "$rc" = 0 ] || { echo "snapshot read failed"; return 1; }
	if ! cmp -s "$WORK/R" "$WORK/A4"; then
		if cmp -s "$WORK/R" "$WORK/C4"; then
			echo "the snapshot read in flight returned W2's data (pattern C)"
		elif cmp -s "$WORK/R" "$WORK/B4"; then
			echo "the snapshot read in flight returned W1's data (pattern B)"
		else
			echo "the snapshot read in flight returned other data"
		fi
		return 1
	fi
	dd if="$SNAP" of="$WORK/R2" bs=4k count=1 iflag=direct,skip_bytes skip=$((at * 512)) \
		status=none
	cmp -s "$WORK/R2" "$WORK/A4" || { echo "the snapshot does not read pattern A afterwards"; return 1; }
}

# C: snapshot_ctr() opens the snapshot's origin with BLK_OPEN_READ only
# (BLK_OPEN_WRITE is for snapshot-merge), the COW device with the table's
# mode, so a snapshot of a device that refuses writers loads. A read-only
# loop device does not tell the two apart (bdev_file_open_by_dev() lets a
# writer in), nor does a mounted one (claimed exclusively, it refuses
# readers too); a device cgroup does. Here the v1 "devices" controller,
# which the loading dmsetup runs in, refuses writers of the origin (EPERM)
# and lets readers in; the COW device stays writable.
t_readonly_origin() {
	need_target snapshot
	local base cow sz cg=$WORK/devcg rc=0
	base=$(mkloop 4)
	sz=$(sectors "$base")
	cow=$(mkloop 4)
	mkdir -p "$cg"
	mount -t cgroup -o devices devcg "$cg" 2>/dev/null ||
		skip_because "devices cgroup (CONFIG_CGROUP_DEVICE)"
	mkdir "$cg/ro"
	echo "b $(devno "$base") w" > "$cg/ro/devices.deny"
	(
		echo "$BASHPID" > "$cg/ro/cgroup.procs"
		if dd if=/dev/zero of="$base" bs=4k count=1 oflag=direct conv=notrunc \
			status=none 2>/dev/null; then
			echo "the device cgroup let a writer open $base"
			exit 1
		fi
		dm s1 "0 $sz snapshot $base $cow N 8" > /dev/null
	) || rc=$?
	rmdir "$cg/ro"
	umount "$cg"
	return $rc
}

# C: __check_for_conflicting_io() waits for the tracked reads of the
# chunk being completed only (its hash of lists is looked up by chunk).
# Here a snapshot read of chunk 1280 is held by dm-delay (DELAY) while an
# origin write to chunk 1536 starts that chunk's copy: the write must
# complete long before the held read does. Ours before reads were counted
# per chunk counted them by chunk & 255, and the copy's completion waited
# for the read of chunk 1280. (Chunks in the middle of the device: udev
# reads the start and the end of each new device.)
t_read_other_chunk() {
	need_target snapshot-origin
	need_target snapshot
	need_target delay
	local base t0 pr took chunk=8 at=10240
	base=$(mkloop 8)
	held_chunk "$base" "$at" "$chunk"
	dd if="$SNAP" of=/dev/null bs=4k count=1 iflag=direct,skip_bytes skip=$((at * 512)) \
		status=none &
	pr=$!
	wait_held -eq 1
	t0=$(date +%s%N)
	dd if=/dev/zero of="$ORIGIN" bs=4k count=1 oflag=direct,seek_bytes \
		seek=$(((at + 256 * chunk) * 512)) conv=notrunc status=none
	took=$(ms_since "$t0")
	echo "# the write to chunk 1536 took $took ms; reads of chunk 1280 held: $(held_reads)"
	wait "$pr"
	if [ "$took" -gt $((REVIEW_DELAY / 2)) ]; then
		echo "the copy's completion waited for a read of another chunk ($took ms)"
		return 1
	fi
}

# C: the stores read the COW device's size at every allocation
# (transient_prepare_exception(), persistent_prepare_exception()), so a
# COW device that grew (lvextend without a reload) is used at once.
t_cow_grown() {
	need_store "$1"
	setup_origin 8
	local cow used
	cow=$(mkloop 1)
	dm_snap s1 "0 $SZ snapshot $BASE $cow $1 8" > /dev/null
	truncate -s 8M "$(losetup -n -O BACK-FILE "$cow")"
	losetup -c "$cow"
	# 3 MiB of changes: more than 1 MiB, less than 8.
	pattern B 3 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B"
	if [ "$(status_of s1)" = Invalid ]; then
		echo "the snapshot was invalidated: its COW device's new size was not used"
		return 1
	fi
	used=$(status_of s1 | awk '{ split($1, u, "/"); print u[1] }')
	echo "# status $(status_of s1)"
	[ "$used" -gt 2048 ] || { echo "only $used sectors allocated"; return 1; }
	same "/dev/mapper/$DM_PREFIX-s1" "$WORK/A"
}

# C: snapshot_resume() suspends the origin device internally
# (dm_internal_suspend_fast()) around __handover_exceptions(), so the
# source's copies drain however busy the origin is, and a reload of a
# snapshot (lvextend) resumes promptly under origin writes. Here 64
# writers, each of one 4 KiB write at a time at Poisson times (4 a
# second), keep copying new chunks into an N snapshot on a COW device
# whose writes dm-delay holds (200 ms), about 40 copies in flight at any
# time and never none; once the copies flow, the snapshot's table is
# reloaded on the same COW device. The resume must finish well before the
# writers stop, and the snapshot must still read as the origin did before
# the writes (no write may slip past both tables). Ours before the fix
# waited for a moment with no copy in flight and took as long as the
# writers (38 s). The P store's batched commits leave such moments, and
# fio with a queue depth drains its queue before it sleeps for a rate, so
# neither shows the wait.
t_handover_busy() {
	setup_origin 64
	local cow dcow table t0 took pid a0 a1 n=0 rc=0
	# Room for a copy of every chunk of the origin: how many the writers
	# reach depends on the guest's speed (they ran 150 s on the debug
	# kernel, and once filled a COW of 48 MiB).
	cow=$(mkloop 65)
	dcow=$(dm dcow "0 $(sectors "$cow") delay $cow 0 0 $cow 0 ${DM_SNAP_REVIEW_COW_DELAY_MS:-200}")
	table="0 $SZ snapshot $BASE $dcow N 8"
	dm_snap s1 "$table" > /dev/null
	fio --name=busy --filename="$ORIGIN" --rw=randwrite --bs=4k --direct=1 \
		--ioengine=psync --thread --numjobs=64 --rate_iops=4 --rate_process=poisson \
		--time_based --runtime="${DM_SNAP_REVIEW_BUSY_SECONDS:-40}" --randrepeat=0 \
		--output=/dev/null &
	pid=$!
	# fio takes seconds to start its writers: wait for two seconds in a
	# row with RATE copies or more each.
	allocated() { status_of s1 | cut -d/ -f1; }
	a0=$(allocated)
	for _ in $(seq 60); do
		sleep 1
		a1=$(allocated)
		if [ $((a1 - a0)) -ge $((8 * ${DM_SNAP_REVIEW_BUSY_RATE:-50})) ]; then n=$((n + 1)); else n=0; fi
		a0=$a1
		[ $n -lt 2 ] || break
	done
	if [ $n -lt 2 ]; then
		echo "the writers did not keep copying: $a1 sectors allocated"
		return 1
	fi
	dmsetup reload "$DM_PREFIX-s1" --table "$table"
	t0=$(date +%s%N)
	dmsetup suspend "$DM_PREFIX-s1"
	dmsetup resume "$DM_PREFIX-s1"
	took=$((($(date +%s%N) - t0) / 1000000))
	echo "# suspend and resume with the handover took $took ms under origin writes ($a1 sectors allocated before, $(allocated) after)"
	# The writers ran through the handover: they may stop now (their run
	# time is only the longest the handover may take to start). fio stopped
	# by SIGINT exits with 128; an I/O error gives 1.
	kill -INT $pid 2> /dev/null || true
	wait $pid || rc=$?
	if [ $rc != 0 ] && [ $rc != 128 ]; then
		echo "the writers failed (fio status $rc)"
		return 1
	fi
	if [ "$took" -gt "${DM_SNAP_REVIEW_RESUME_LIMIT_MS:-15000}" ]; then
		echo "the handover waited for the origin writes to stop ($took ms)"
		return 1
	fi
	case $(status_of s1) in
	Invalid*) echo "the snapshot is invalid after the handover"; return 1 ;;
	esac
	same "/dev/mapper/$DM_PREFIX-s1" "$WORK/A"
}

# C: copy_callback() ends a copy in the COW throttle (account_end_copy())
# when its callback returns, also when the persistent store only batched
# the exception for a later metadata write, not once that write is done.
# Here the header and metadata area 0 (chunks 0 and 1 of 8 sectors) are
# behind dm-delay, which holds each write there for HOLD ms, the data
# chunks' writes for HOLD/2 ms (so that W1 and W2 both have their chunks
# before either copy ends), and there is room for two copies: W1's and
# W2's copies land in COW chunks 2 and 3; the first callback batches its
# exception, the second writes the area, which is held. W3, started then,
# must get
# its COW chunk (the status line's allocated sectors grow) while W1 and W2
# still wait for that write: one of the two slots is free.
#
# Writes held for HOLD ms on purpose, one after the other, may keep a task
# waiting longer than the hung-task detector allows (20 s; HOLD is 30 s on
# the debug kernel): for this test, its limit is raised to what the holds
# add up to, and set back when the test's subshell exits.
t_slot_at_copy_end() {
	local hung=/proc/sys/kernel/hung_task_timeout_secs old_hung need
	old_hung=$(cat "$hung")
	need=$((${DM_SNAP_REVIEW_COMMIT_DELAY_MS:-8000} * 4 / 1000 + 10))
	if [ "$need" -gt "$old_hung" ]; then
		# shellcheck disable=SC2064
		trap "echo $old_hung > $hung" EXIT
		echo "$need" > "$hung"
	fi
	need_store P
	need_target delay
	need_param snapshot_cow_threshold
	setup_origin 8
	local cow csz dcow pw1 pw2 pw3 end rc=0 old t0 a1 a2
	local hold=${DM_SNAP_REVIEW_COMMIT_DELAY_MS:-8000}
	local threshold=/sys/module/$MOD/parameters/snapshot_cow_threshold
	cow=$(mkloop 4)
	csz=$(sectors "$cow")
	printf '%s\n' "0 16 delay $cow 0 0 $cow 0 $hold" \
		"16 $((csz - 16)) delay $cow 16 0 $cow 16 $((hold / 2))" |
		dmsetup create "$DM_PREFIX-dcow"
	dcow=/dev/mapper/$DM_PREFIX-dcow
	dm_snap s1 "0 $SZ snapshot $BASE $dcow P 8" > /dev/null
	old=$(cat "$threshold")
	echo 1 > "$threshold"
	allocated() { status_of s1 | cut -d/ -f1; }
	landed() { [ -n "$(dd if="$dcow" bs=4k skip="$1" count=1 iflag=direct status=none | tr -d '\0' | head -c 1)" ]; }
	t0=$(date +%s%N)
	dd if=/dev/zero of="$ORIGIN" bs=4k count=1 seek=16 oflag=direct conv=notrunc status=none &
	pw1=$!
	dd if=/dev/zero of="$ORIGIN" bs=4k count=1 seek=32 oflag=direct conv=notrunc status=none &
	pw2=$!
	end=$((SECONDS + 60))
	until landed 2 && landed 3; do
		if [ "$SECONDS" -gt "$end" ]; then
			echo "W1's and W2's copies never reached the COW device"
			echo "$old" > "$threshold"
			return 1
		fi
		sleep 0.1
	done
	a1=$(allocated)
	echo "# W1's and W2's copies in COW chunks 2 and 3 at $(ms_since "$t0") ms, $a1 sectors allocated"
	dd if=/dev/zero of="$ORIGIN" bs=4k count=1 seek=48 oflag=direct conv=notrunc status=none &
	pw3=$!
	sleep "$(awk -v h="$hold" 'BEGIN { print h / 2000 }')"
	a2=$(allocated)
	if ! kill -0 "$pw1" 2> /dev/null || ! kill -0 "$pw2" 2> /dev/null; then
		echo "W1 or W2 completed before the check: raise DM_SNAP_REVIEW_COMMIT_DELAY_MS"
		rc=1
	elif [ "$a2" -le "$a1" ]; then
		echo "W3's chunk was not allocated while the commit was held ($a1 -> $a2 sectors at $(ms_since "$t0") ms)"
		rc=1
	else
		echo "# W3's chunk allocated at $(ms_since "$t0") ms ($a1 -> $a2 sectors), the commit held"
	fi
	wait "$pw1" "$pw2" "$pw3"
	echo "$old" > "$threshold"
	return "$rc"
}

# Items 4 and 12: the lock order, which C leaves to lockdep. An origin
# write may come from memory reclaim, and it takes the registry lock, so
# nothing may allocate under that lock, nor take it while a snapshot's
# lock is held. Ours shows lockdep the order once per table load, with
# reclaim outermost, so that either mistake is reported the first time its
# path runs. This runs the paths that had them: table loads (the registry
# written), and origin writes waiting for copies in flight on a persistent
# store, retried once their commit is on disk. The COW device's writes are
# delayed 100 ms so that the second write of each chunk finds its copy in
# flight. No lockdep report may follow.
t_lock_order() {
	[ -r /proc/lockdep_stats ] || skip_because "the kernel has no lockdep"
	if ! grep -q 'debug_locks: *1' /proc/lockdep_stats; then
		echo "lockdep was off before the test (an earlier report in this boot)"
		return 1
	fi
	dmesg -C
	need_store P
	need_target delay
	setup_origin 8
	local cowloop cow i pids=
	cowloop=$(mkloop 4)
	cow=$(dm cow "0 $(sectors "$cowloop") delay $cowloop 0 0 $cowloop 0 100")
	dm_snap s1 "0 $SZ snapshot $BASE $cow P 8" > /dev/null
	for i in 0 1 2 3 4 5 6 7; do
		dd if=/dev/zero of="$ORIGIN" bs=4k count=1 seek=$((i % 4 * 8)) \
			oflag=direct conv=notrunc status=none &
		pids="$pids $!"
	done
	# shellcheck disable=SC2086 # one pid a word
	wait $pids
	dm_remove s1
	if dmesg | grep -E 'possible circular locking|inconsistent lock state|possible recursive locking|WARNING:'; then
		echo "lockdep reported the above"
		return 1
	fi
	grep -q 'debug_locks: *1' /proc/lockdep_stats || { echo "lockdep turned itself off"; return 1; }
	echo "# a table load and 8 origin writes on 4 chunks: no lockdep report"
}

ktap_set_plan 13
run_test "invalidation raises a dm event" t_invalid_event
run_test "handover cancelled when its source is removed" t_handover_cancelled
run_test "a handover source cannot resume before the handover" t_handover_source_resume
run_test "a third table on a COW shared by two live snapshots is refused" t_third_table
run_test "concurrent creates on one fresh COW leave one live table" t_concurrent_create
run_test "an origin write waits for snapshot reads of the chunk it overwrites" t_read_vs_overwrite
run_test "a copy's completion does not wait for reads of other chunks" t_read_other_chunk
run_test "a snapshot of an origin that refuses writers loads" t_readonly_origin
run_test "a COW device that grew without a reload is used (N)" t_cow_grown N
run_test "a COW device that grew without a reload is used (P)" t_cow_grown P
run_test "a handover under origin writes does not wait for them to stop" t_handover_busy
run_test "a copy's throttle slot is free before its commit is on disk" t_slot_at_copy_end
run_test "lockdep knows the lock order, reclaim outermost" t_lock_order
