# SPDX-License-Identifier: GPL-2.0
# Corrupt or hostile COW devices (P store). A table on one is refused with
# "Failed to read snapshot metadata" and the reason in the kernel log, or
# the snapshot loads and I/O on it fails or succeeds without harm; nothing
# is written outside the COW device and the kernel log stays clean (the
# runner checks). Ours refuses every case: its loader checks each
# exception against the device. C does not check exceptions and loads some
# of these; that must not crash either.

load_impl
SNAP_MAGIC=0x70416e53
ERR="Failed to read snapshot metadata"
COWIMG=$TOP/tests/dm-snapshot/cowimg.py

# setup [COW_SECTORS]: an origin of 4 MiB holding pattern A, and a zeroed
# COW device (8 MiB unless given) on a 10 MiB loop device, right after a
# 1 MiB canary and right before another.
setup() {
	need_target snapshot
	need_store P
	[ -f "$WORK/corrupt-A" ] || pattern A 4 > "$WORK/corrupt-A"
	[ -f "$WORK/corrupt-K" ] || pattern K 1 > "$WORK/corrupt-K"
	cp "$WORK/corrupt-A" "$WORK/A"
	BASE=$(mkloop 4)
	SZ=$(sectors "$BASE")
	write_at "$BASE" "$WORK/A"
	DISK=$(mkloop 10)
	COW_LEN=${1:-16384}
	write_at "$DISK" "$WORK/corrupt-K"
	write_at "$DISK" "$WORK/corrupt-K" $(((2048 + COW_LEN) / 2))
	COW=$(dm cow "0 $COW_LEN linear $DISK 2048")
}

# canary SECTOR: the 1 MiB at SECTOR of the disk still holds its pattern.
canary() {
	dd if="$DISK" bs=512 skip="$1" count=2048 iflag=direct status=none |
		cmp -s - "$WORK/corrupt-K"
}

check_canaries() {
	canary 0 || { echo "written before the COW device"; return 1; }
	canary $((2048 + COW_LEN)) || { echo "written after the COW device"; return 1; }
}

# try_load REASON: load a P snapshot on the COW device. Refused: the log
# gives $ERR, and for ours REASON too. Loaded (C only): read it all, write
# to it and to the origin chunks it has exceptions for, then remove it.
try_load() {
	local name=$DM_PREFIX-s
	dmesg -C
	if dmsetup create "$name" --table "0 $SZ snapshot $BASE $COW P 8" 2>/dev/null; then
		if [ "$IMPL" = rust ]; then
			echo "table on a corrupt COW device loaded; expected: $1"
			return 1
		fi
		echo "# loaded by $MOD, status: $(dmsetup status "$name" | cut -d' ' -f4-)"
		dd if="/dev/mapper/$name" of=/dev/null bs=64k iflag=direct status=none || true
		dd if="$WORK/A" of="/dev/mapper/$name" bs=4k count=16 oflag=direct status=none || true
		dm_remove s
	elif [ "$IMPL" = rust ]; then
		refused "$name" "$ERR" "$1" || return 1
	else
		refused "$name" "$ERR" || return 1
	fi
	check_canaries
}

# t_case REASON [SETUP_ARG] -- COWIMG_ARGS...
t_case() {
	local reason=$1 len=
	shift
	[ "$1" = -- ] || { len=$1; shift; }
	shift
	setup $len
	"$COWIMG" "$COW" "$@"
	try_load "$reason"
}

# A well-formed device with two exceptions loads, as a control.
t_good() {
	setup
	pattern B 1 | head -c 4096 > "$WORK/B"
	# chunk 5 of the snapshot is in COW chunk 2
	write_at "$COW" "$WORK/B" 8
	"$COWIMG" "$COW" $SNAP_MAGIC 1 1 8 0:5:2 0:6:3
	local s
	s=$(dm s "0 $SZ snapshot $BASE $COW P 8")
	expect "$(dmsetup status "$DM_PREFIX-s" | cut -d' ' -f4-)" "32/16384 16" "status"
	splice "$WORK/A" "$WORK/B" 20 > "$WORK/exp"
	head -c 24576 "$WORK/exp" > "$WORK/exp24"
	same "$s" "$WORK/exp24"
	dm_remove s
	check_canaries
}

# Area 0 full (256 exceptions of a 4 KiB chunk), so the metadata goes on in
# area 1 at chunk 258, just past the end of a COW device of 2064 sectors.
t_truncated() {
	local specs=() i
	for ((i = 0; i < 256; i++)); do
		specs+=("0:$i:$((i + 2))")
	done
	setup 2064
	"$COWIMG" "$COW" $SNAP_MAGIC 1 1 8 "${specs[@]}"
	try_load "metadata area beyond the end of the COW device"
}

ktap_set_plan 12
run_test "corrupt COW: control, a well-formed device loads" t_good
run_test "corrupt COW: bad magic" t_case "Invalid or corrupt snapshot" -- 0x12345678 1 1 8
run_test "corrupt COW: version 2" t_case "unable to handle snapshot disk version" -- $SNAP_MAGIC 1 2 8
run_test "corrupt COW: chunk size 0" t_case "Chunk size is not a power of 2" -- $SNAP_MAGIC 1 1 0
run_test "corrupt COW: chunk size not a power of two" t_case "Chunk size is not a power of 2" -- $SNAP_MAGIC 1 1 24
run_test "corrupt COW: chunk size beyond the device" t_case "chunk size in device metadata exceeds the device" -- $SNAP_MAGIC 1 1 65536
run_test "corrupt COW: new_chunk past the device end" t_case "exception beyond the end of the COW device" -- $SNAP_MAGIC 1 1 8 0:5:2 0:6:100000
run_test "corrupt COW: new_chunk on the area it is in" t_case "exception points to a metadata chunk" -- $SNAP_MAGIC 1 1 8 0:5:2 0:6:1
run_test "corrupt COW: new_chunk on a later metadata area" t_case "exception points to a metadata chunk" -- $SNAP_MAGIC 1 1 8 0:5:258
run_test "corrupt COW: repeated old_chunk" t_case "repeated in metadata" -- $SNAP_MAGIC 1 1 8 0:5:2 0:5:3
run_test "corrupt COW: huge old_chunk and new_chunk" t_case "exception beyond the end of the COW device" -- $SNAP_MAGIC 1 1 8 0:0xffffffffffffffff:0xfffffffffffffffe
run_test "corrupt COW: truncated device, full area continues past its end" t_truncated
