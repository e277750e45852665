# SPDX-License-Identifier: GPL-2.0
# On-disk compatibility of the persistent store between the C dm-snapshot
# and ours: a COW device written by one reads the same through the other,
# both ways, and the same writes leave the same bytes on the COW device;
# and a COW device as a crash may leave it, at every point of a logged
# run, loads on both and holds what it must.
# Both modules take turns in one guest; the group is the same whichever
# implementation is under test.

C_KO=$KDIR/drivers/md/dm-snapshot.ko
RUST_KO=${DM_SNAP_KO:-$KDIR/drivers/md/dm_snapshot_rs.ko}
REPLAY=$TOP/tests/dm-snapshot/replay.py
REPLAY_OPS=${DM_SNAP_REPLAY_OPS:-160}
REPLAY_POINTS=${DM_SNAP_REPLAY_POINTS:-40}
REPLAY_SEED=${DM_SNAP_REPLAY_SEED:-$RANDOM}

# use_mod c|rust: that module alone provides the snapshot targets.
use_mod() {
	local m
	for m in dm_snapshot dm_snapshot_rs; do
		if grep -qw "^$m" /proc/modules; then
			rmmod "$m"
		fi
	done
	case $1 in
	c)	insmod "$C_KO" ;;
	rust)	insmod "$RUST_KO" ;;
	esac
}

# Both modules must have the P store.
need_both() {
	local m o c ok
	[ -f "$C_KO" ] || skip_because "$C_KO not built"
	for m in c rust; do
		use_mod $m
		o=$(mkloop 1)
		c=$(mkloop 1)
		ok=yes
		dmsetup create "$DM_PREFIX-probe" --table "0 2048 snapshot $o $c P 8" 2>/dev/null || ok=
		[ -z "$ok" ] || dm_remove probe
		losetup -d "$o" "$c"
		[ -n "$ok" ] || skip_because "exception store P not in the $m module"
	done
}

# begin: every test ends with its devices gone and the module under test
# loaded again, and needs P in both modules.
begin() {
	trap 'cleanup_devices; use_mod $IMPL' EXIT
	need_both
}

# devices BASE_MIB COW_MIB: new origin and COW loop devices.
devices() {
	BASE=$(mkloop "$1")
	COW=$(mkloop "$2")
	SZ=$(sectors "$BASE")
}

# open_snap: the origin and a P snapshot of it on $COW, through the module
# loaded now.
open_snap() {
	ORIGIN=$(dm origin "0 $SZ snapshot-origin $BASE")
	SNAP=$(dm_snap s "0 $SZ snapshot $BASE $COW P 8")
}

close_snap() {
	dm_remove s origin
}

# status_of: used/total metadata of the snapshot.
status_of() { dmsetup status "$DM_PREFIX-s" | cut -d' ' -f4-; }

# keep N: save what the snapshot and the origin read and the status, then
# close them.
keep() {
	dd if="$SNAP" of="$WORK/s$1" bs=64k iflag=direct status=none
	dd if="$ORIGIN" of="$WORK/o$1" bs=64k iflag=direct status=none
	status_of > "$WORK/st$1"
	close_snap
}

# reopen N WHO: open them through the module loaded now; they must read
# and report what keep N saw through WHO.
reopen() {
	open_snap
	same "$SNAP" "$WORK/s$1"
	same "$ORIGIN" "$WORK/o$1"
	expect "$(status_of)" "$(cat "$WORK/st$1")" "status of what $2 left"
}

# t_cross WRITER READER: WRITER makes exceptions (origin writes, whole- and
# sub-chunk snapshot writes); READER opens the COW device and must see the
# same snapshot, origin and usage, then adds exceptions of its own; WRITER
# opens it again and must see those too.
t_cross() {
	local w=$1 r=$2
	begin
	devices 16 24
	pattern A 16 > "$WORK/A"
	write_at "$BASE" "$WORK/A"
	pattern B 4 > "$WORK/B"
	pattern C 2 > "$WORK/C"
	pattern D 1 | head -c 2048 > "$WORK/D"

	use_mod "$w"
	open_snap
	write_at "$ORIGIN" "$WORK/B" 1024
	write_at "$SNAP" "$WORK/C" 8192
	write_at "$ORIGIN" "$WORK/D" 101
	write_at "$SNAP" "$WORK/D" 301
	keep 1

	use_mod "$r"
	reopen 1 "$w"
	write_at "$ORIGIN" "$WORK/C" 12288
	write_at "$SNAP" "$WORK/D" 6001
	splice "$WORK/s1" "$WORK/D" 6001 > "$WORK/s1d"
	same "$SNAP" "$WORK/s1d"
	keep 2

	use_mod "$w"
	reopen 2 "$r"
	close_snap
}

# The same single-writer sequence of synchronous writes through each
# module leaves the same header, metadata areas and data chunks.
t_same_bytes() {
	local m img
	begin
	pattern A 16 > "$WORK/A"
	pattern B 2 > "$WORK/B"
	pattern C 1 > "$WORK/C"
	pattern D 1 | head -c 2048 > "$WORK/D"
	for m in c rust; do
		use_mod $m
		devices 16 8
		write_at "$BASE" "$WORK/A"
		open_snap
		write_at "$ORIGIN" "$WORK/B" 1024
		write_at "$SNAP" "$WORK/C" 4096
		write_at "$ORIGIN" "$WORK/D" 101
		write_at "$SNAP" "$WORK/D" 301
		write_at "$ORIGIN" "$WORK/B" 2048
		close_snap
		img=$(losetup -n -O BACK-FILE "$COW")
		cp "$img" "$WORK/cow-$m"
		losetup -d "$BASE" "$COW"
	done
	if ! cmp "$WORK/cow-c" "$WORK/cow-rust"; then
		echo "first differing bytes (offset, C, ours, octal):"
		cmp -l "$WORK/cow-c" "$WORK/cow-rust" | head -n 8
		return 1
	fi
}

# t_invalid WRITER READER: a snapshot WRITER invalidated (its COW device
# overflowed) loads as Invalid through READER.
t_invalid() {
	local w=$1 r=$2
	begin
	devices 4 1
	pattern B 2 > "$WORK/B"
	use_mod "$w"
	open_snap
	write_at "$ORIGIN" "$WORK/B"
	expect "$(status_of)" "Invalid" "status through $w after overflow"
	close_snap
	use_mod "$r"
	open_snap
	expect "$(status_of)" "Invalid" "status through $r"
	if dd if="$SNAP" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
		echo "read of an invalid snapshot succeeded"
		return 1
	fi
	close_snap
}

# Every point of a logged run (issue 15): the origin and a P snapshot's
# COW device sit on one disk behind dm-log-writes, which logs each write
# as the disk completed it, flushes and FUA writes in their place. The
# module under test takes the snapshot and runs REPLAY_OPS writes of 4 KiB
# to the origin and the snapshot at random (each block tagged with its
# device and write number), with a flush and a mark every 8. Then the log
# is replayed onto a fresh device up to each chosen point (every flush,
# FUA and mark, and points between them: writes the disk may have had or
# lost), and a snapshot table loaded there, by each module in turn, must
# load and read as the origin did when the snapshot was taken, except
# for the snapshot's own writes: the last one on disk at the point's mark,
# or a later one. REPLAY_POINTS is "all" or how many to check.
t_replay() {
	need_target log-writes
	begin
	use_mod "$IMPL"
	local disk log lw state rdev m
	disk=$(mkloop 9)
	log=$(mkloop 96)
	lw=$(dm lw "0 $(sectors "$disk") log-writes $disk $log")
	dm obase "0 8192 linear $lw 0" > /dev/null
	dm cow "0 10240 linear $lw 8192" > /dev/null
	python3 "$REPLAY" fill "/dev/mapper/$DM_PREFIX-obase"
	dm origin "0 8192 snapshot-origin /dev/mapper/$DM_PREFIX-obase" > /dev/null
	dm_snap s "0 8192 snapshot /dev/mapper/$DM_PREFIX-obase /dev/mapper/$DM_PREFIX-cow P 8" > /dev/null
	dmsetup message "$DM_PREFIX-lw" 0 mark snap
	state=$WORK/replay.json
	python3 "$REPLAY" write "$DM_PREFIX-lw" "/dev/mapper/$DM_PREFIX-origin" \
		"/dev/mapper/$DM_PREFIX-s" "$REPLAY_OPS" "$REPLAY_SEED" "$state"
	# The log is complete once its device is gone.
	dm_remove s origin cow obase lw
	echo "# seed $REPLAY_SEED (DM_SNAP_REPLAY_SEED)"
	rdev=$(mkloop 9)
	for m in "$IMPL" $([ "$IMPL" = rust ] && echo c || echo rust); do
		use_mod "$m"
		python3 "$REPLAY" check "$log" "$state" "$rdev" 8192 10240 "$REPLAY_POINTS" "$m"
	done
}

ktap_set_plan 6
run_test "compat: COW written by C reads the same through ours and back" t_cross c rust
run_test "compat: COW written by ours reads the same through C and back" t_cross rust c
run_test "compat: same writes leave the same bytes on the COW device" t_same_bytes
run_test "compat: invalidated by C, Invalid through ours" t_invalid c rust
run_test "compat: invalidated by ours, Invalid through C" t_invalid rust c
run_test "compat: every point of a logged run, replayed, loads on C and ours and holds its data" t_replay
