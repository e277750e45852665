# SPDX-License-Identifier: GPL-2.0
# Data semantics of origins and snapshots.

load_impl

# An origin of 16 MiB holding pattern A, mapped through snapshot-origin.
setup_origin() {
	need_target snapshot-origin
	need_target snapshot
	BASE=$(mkloop 16)
	SZ=$(sectors "$BASE")
	pattern A 16 > "$WORK/A"
	write_at "$BASE" "$WORK/A"
	ORIGIN=$(dm origin "0 $SZ snapshot-origin $BASE")
}

# snap NAME STORE CHUNK: a snapshot of the origin on a fresh COW device,
# large enough (24 MiB) to hold every chunk of the 16 MiB origin.
snap() {
	local cow
	cow=$(mkloop 24)
	dm_snap "$1" "0 $SZ snapshot $BASE $cow $2 $3"
}

t_origin_write() {
	need_store "$1"
	setup_origin
	local s
	s=$(snap s1 "$1" 8)
	pattern B 4 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B" 1024          # 4 MiB at 1 MiB
	same "$s" "$WORK/A"
	# and the origin has the new data
	splice "$WORK/A" "$WORK/B" 1024 > "$WORK/exp"
	same "$ORIGIN" "$WORK/exp"
}

t_snapshot_write() {
	need_store "$1"
	setup_origin
	local s
	s=$(snap s1 "$1" 8)
	pattern C 2 > "$WORK/C"
	write_at "$s" "$WORK/C" 4096               # 2 MiB at 4 MiB
	same "$ORIGIN" "$WORK/A"
	splice "$WORK/A" "$WORK/C" 4096 > "$WORK/exp"
	same "$s" "$WORK/exp"
}

t_partial_chunk_write() {
	setup_origin
	local s
	s=$(snap s1 N 16)
	# 4 KiB into the middle of an 8 KiB chunk, on both sides
	pattern D 1 | head -c 4096 > "$WORK/D"
	write_at "$ORIGIN" "$WORK/D" 36
	write_at "$s" "$WORK/D" 100
	splice "$WORK/A" "$WORK/D" 100 > "$WORK/exp"
	same "$s" "$WORK/exp"
	splice "$WORK/A" "$WORK/D" 36 > "$WORK/exp"
	same "$ORIGIN" "$WORK/exp"
}

# The second snapshot's store is $1.
t_many_snapshots() {
	need_store "$1"
	setup_origin
	local s1 s2 s3
	s1=$(snap s1 N 8)
	pattern B 16 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B"
	s2=$(snap s2 "$1" 16)
	pattern C 16 > "$WORK/C"
	write_at "$ORIGIN" "$WORK/C"
	s3=$(snap s3 N 32)
	pattern D 8 > "$WORK/D"
	write_at "$ORIGIN" "$WORK/D" 4096
	same "$s1" "$WORK/A"
	same "$s2" "$WORK/B"
	same "$s3" "$WORK/C"
	splice "$WORK/C" "$WORK/D" 4096 > "$WORK/exp"
	same "$ORIGIN" "$WORK/exp"
}

# Ten snapshots of one origin: an origin write copies its chunk into each.
# Ours reads the chunk once for those of one chunk size, at most eight at
# a time (one kcopyd job): here nine of chunk size 8 and one of 16, in
# the registry's order, so two or three jobs. Three of the nine have a COW
# device that fails every data chunk write: those, and only those, become
# invalid, whatever their place among the copies that shared a read (no
# order of the registry makes all three the first of a job).
t_shared_copies() {
	setup_origin
	local i s good=() bad=() cow
	for i in $(seq 6); do
		s=P
		[ $((i % 3)) != 0 ] || s=N
		good+=("$(snap "s$i" $s 8)")
	done
	good+=("$(snap s7 P 16)")
	for i in 1 2 3; do
		# Sectors 0-15 (the header and the first metadata area at chunk
		# size 8) work, the rest fail.
		cow=$(mkloop 4)
		dmsetup create "$DM_PREFIX-acow$i" <<-EOF
		0 16 linear $cow 0
		16 $(($(sectors "$cow") - 16)) error
		EOF
		dm_snap "bad$i" "0 $SZ snapshot $BASE /dev/mapper/$DM_PREFIX-acow$i P 8" > /dev/null
	done
	pattern B 2 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B" 1024          # 2 MiB at 1 MiB
	# The first 4 MiB hold what changed.
	head -c 4M "$WORK/A" > "$WORK/A4"
	for s in "${good[@]}"; do
		same "$s" "$WORK/A4"
		case $(dmsetup status "$s" | awk '{print $4}') in
		*/49152) ;;
		*)	echo "$s: $(dmsetup status "$s")"; return 1 ;;
		esac
	done
	for i in 1 2 3; do
		expect "$(dmsetup status "$DM_PREFIX-bad$i" | awk '{print $4}')" Invalid "bad$i, on a failing COW device"
	done
	splice "$WORK/A4" "$WORK/B" 1024 > "$WORK/exp"
	same "$ORIGIN" "$WORK/exp"
}

# Reading a snapshot copies nothing: its chunks come from the origin.
t_reads_from_origin() {
	setup_origin
	local s before after
	s=$(snap s1 N 8)
	before=$(dmsetup status "$DM_PREFIX-s1")
	same "$s" "$WORK/A"
	after=$(dmsetup status "$DM_PREFIX-s1")
	expect "$after" "$before" "status after reading the whole snapshot"
	expect "$(dmsetup status "$DM_PREFIX-s1" | awk '{print $4}')" "0/49152" "allocation"
}

# A snapshot table reloaded on its COW device keeps the live table's
# exceptions (handed over on resume), here after the COW device grew, as
# lvextend of a snapshot does.
t_reload() {
	need_store "$1"
	setup_origin
	local s cow name=$DM_PREFIX-s1 used
	cow=$(mkloop 8)
	s=$(dm_snap s1 "0 $SZ snapshot $BASE $cow $1 8")
	pattern B 4 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B" 1024          # 4 MiB at 1 MiB
	used=$(dmsetup status "$name" | awk '{split($4, u, "/"); print u[1]}')
	truncate -s 24M "$(losetup -n -O BACK-FILE "$cow")"
	losetup -c "$cow"
	dmsetup reload "$name" --table "0 $SZ snapshot $BASE $cow $1 8"
	dmsetup suspend "$name"
	dmsetup resume "$name"
	same "$s" "$WORK/A"
	expect "$(dmsetup status "$name" | awk '{print $4}')" "$used/49152" "usage after reload"
	# 8 MiB more than the COW device held before it grew
	pattern C 8 > "$WORK/C"
	write_at "$ORIGIN" "$WORK/C" 8192
	same "$s" "$WORK/A"
	splice "$WORK/A" "$WORK/B" 1024 > "$WORK/AB"
	splice "$WORK/AB" "$WORK/C" 8192 > "$WORK/exp"
	same "$ORIGIN" "$WORK/exp"
}

# A snapshot created while its origin stays resumed, as "dmsetup create"
# allows: the origin's writes were never split at its chunks (with no
# snapshot at the origin's resume, C splits at 2^31 sectors). Each 64 KiB
# write spans 16 chunks, and the snapshot must keep every one of them,
# those of a second snapshot of smaller chunks, created the same way,
# too.
t_origin_not_resumed() {
	[ "$IMPL" = c ] && skip_because "C copies the first chunk of such a write only (its split is set at the origin's resume)"
	setup_origin
	local s1 s2
	s1=$(dm s1 "0 $SZ snapshot $BASE $(mkloop 24) N 16")
	pattern B 4 > "$WORK/B"
	write_at "$ORIGIN" "$WORK/B" 1024          # 4 MiB at 1 MiB
	s2=$(dm s2 "0 $SZ snapshot $BASE $(mkloop 24) P 8")
	pattern C 4 > "$WORK/C"
	write_at "$ORIGIN" "$WORK/C" 4096          # 4 MiB at 4 MiB
	same "$s1" "$WORK/A"
	splice "$WORK/A" "$WORK/B" 1024 > "$WORK/exp"
	same "$s2" "$WORK/exp"
	splice "$WORK/exp" "$WORK/C" 4096 > "$WORK/exp2"
	same "$ORIGIN" "$WORK/exp2"
}

ktap_set_plan 13
run_test "origin write leaves N snapshot unchanged" t_origin_write N
run_test "origin write leaves P snapshot unchanged" t_origin_write P
run_test "snapshot write leaves origin unchanged (N)" t_snapshot_write N
run_test "snapshot write leaves origin unchanged (P)" t_snapshot_write P
run_test "sub-chunk writes to origin and snapshot" t_partial_chunk_write
run_test "three snapshots of one origin keep their own content" t_many_snapshots N
run_test "three snapshots, one persistent, keep their own content" t_many_snapshots P
run_test "ten snapshots of one origin, three failing, keep their own content" t_shared_copies
run_test "reads of unchanged chunks come from the origin" t_reads_from_origin
run_test "snapshot write leaves origin unchanged (PO)" t_snapshot_write PO
run_test "reloaded N snapshot keeps its exceptions, COW grown" t_reload N
run_test "reloaded P snapshot keeps its exceptions, COW grown" t_reload P
run_test "snapshots created without an origin resume get every chunk of its writes" t_origin_not_resumed
