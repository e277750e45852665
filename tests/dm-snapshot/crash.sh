# SPDX-License-Identifier: GPL-2.0
# Crash consistency of the persistent store and of snapshot-merge. Phase 1
# takes a P snapshot and, under heavy origin writes to it, starts merging
# another P snapshot into its own origin, then stops the guest hard (sysrq
# b: an immediate reset, with no sync and no device shutdown) with both
# in flight; the host boots the guest again on the same disk for phase 2:
# - the first snapshot loads and reads back: every chunk must hold what
#   the origin held before the snapshot was taken, the chunks with
#   exceptions (copied before their origin write went ahead) and the ones
#   without (never written, since a write waits for its copy to be on
#   disk) alike;
# - a snapshot-merge table on the second COW device goes on from the
#   metadata on disk (issue 13), and the origin then holds what the
#   snapshot held before the merge.
#
# Disk layout (128 MiB virtio disk): origin 16 MiB | P COW 32 MiB | merge
# origin 16 MiB | merge COW 16 MiB. The merge COW device sits behind
# dm-delay in phase 1 (DM_SNAP_MERGE_DELAY_MS, default 100), so that the
# merge is stopped in its middle.

DISK=${PERSIST_DISK:-$(ls /dev/vda /dev/sda 2>/dev/null | head -n1)}
MERGE_DELAY=${DM_SNAP_MERGE_DELAY_MS:-100}
load_impl

status_of() { dmsetup status "$DM_PREFIX-$1" | cut -d' ' -f4-; }

layout() {
	need_target snapshot-origin
	need_target snapshot
	need_store P
	[ "$(sectors "$DISK")" -ge 163840 ] || { echo "$DISK too small"; return 1; }
	BASE=$(dm base "0 32768 linear $DISK 0")
	PCOW=$(dm pcow "0 65536 linear $DISK 32768")
	pattern A 16 > "$WORK/A"
}

# merge_layout: MBASE and MCOW on the disk, and the merging snapshot's
# content in $WORK/snap: pattern A, with pattern C at 8 MiB and D at 12 MiB.
merge_layout() {
	need_target snapshot-merge
	[ "$(sectors "$DISK")" -ge 163840 ] || { echo "$DISK too small"; return 1; }
	MBASE=$(dm mbase "0 32768 linear $DISK 98304")
	MCOW=$(dm mcow "0 32768 linear $DISK 131072")
	pattern A 16 > "$WORK/A"
	pattern C 1 > "$WORK/C"
	pattern D 1 > "$WORK/D"
	splice "$WORK/A" "$WORK/C" 8192 > "$WORK/AC"
	splice "$WORK/AC" "$WORK/D" 12288 > "$WORK/snap"
}

# merge_snapshot: a P snapshot of MBASE on MCOW with three kinds of
# exceptions: origin writes (long runs), snapshot writes, and 4 KiB
# snapshot writes from the last block back (one merge step each).
merge_snapshot() {
	local s
	write_at "$MBASE" "$WORK/A"
	# A zeroed header makes a new store.
	head -c 65536 /dev/zero > "$WORK/Z64"
	write_at "$MCOW" "$WORK/Z64"
	dm morigin "0 32768 snapshot-origin $MBASE" > /dev/null
	s=$(dm ms1 "0 32768 snapshot $MBASE $MCOW P 8")
	dmsetup suspend "$DM_PREFIX-morigin"
	dmsetup resume "$DM_PREFIX-morigin"
	pattern B 2 > "$WORK/B"
	write_at "/dev/mapper/$DM_PREFIX-morigin" "$WORK/B" 1024
	write_at "$s" "$WORK/C" 8192
	write_backwards "$s" "$WORK/D" 12288
	same "$s" "$WORK/snap"
}

# start_merge: as lvconvert --merge, with the COW device slowed down;
# returns once the merge has merged something.
start_merge() {
	local start used
	start=$(status_of ms1 | awk '{ split($1, u, "/"); print u[1] }')
	dmsetup suspend "$DM_PREFIX-mcow"
	dmsetup reload "$DM_PREFIX-mcow" --table "0 32768 delay $DISK 131072 $MERGE_DELAY"
	dmsetup resume "$DM_PREFIX-mcow"
	dmsetup suspend "$DM_PREFIX-ms1"
	dmsetup suspend "$DM_PREFIX-morigin"
	dmsetup reload "$DM_PREFIX-morigin" --table "0 32768 snapshot-merge $MBASE $MCOW P 8"
	dmsetup resume "$DM_PREFIX-morigin"
	for _ in $(seq 300); do
		used=$(status_of morigin | awk '{ split($1, u, "/"); print u[1] }')
		[ "$used" -ge "$start" ] || break
		sleep 0.1
	done
	echo "# merging: $used of $start sectors left"
	[ "$used" -lt "$start" ]
}

t_phase1() {
	layout
	merge_layout
	merge_snapshot
	write_at "$BASE" "$WORK/A"
	head -c $((65536 * 512)) /dev/zero > "$WORK/Z"
	write_at "$PCOW" "$WORK/Z"
	local o used
	o=$(dm origin "0 32768 snapshot-origin $BASE")
	dm_snap ps "0 32768 snapshot $BASE $PCOW P 8" >/dev/null
	command -v fio >/dev/null || skip_because "fio not installed"
	# Two writers of random 4 KiB blocks and one of 64 KiB ones, queued
	# deep, until the guest stops.
	fio --filename="$o" --direct=1 --ioengine=libaio --rw=randwrite \
		--time_based --runtime=600 --randrepeat=0 \
		--name=small --bs=4k --iodepth=16 --numjobs=2 \
		--name=big --bs=64k --iodepth=4 > /dev/null 2>&1 &
	# Until half of the origin is copied, or two minutes on a slow guest.
	for _ in $(seq 120); do
		used=$(dmsetup status "$DM_PREFIX-ps" | awk '{split($4, u, "/"); print u[1]}')
		[ "$used" -lt 16384 ] || break
		sleep 1
	done
	echo "# $used sectors of the COW device used, writes going on"
	[ "$used" -ge 4096 ]
	start_merge
}

# The guest stops here, writes and the merge in flight: no sync, no teardown. The host
# sees the guest end with status 255 after this line.
crash() {
	ktap_print_msg "stopping the guest hard"
	sleep 1
	echo b > /proc/sysrq-trigger
	sleep 5
	echo "Bail out! still running after sysrq b"
}

t_phase2() {
	layout
	local ps st
	dm origin "0 32768 snapshot-origin $BASE" >/dev/null
	ps=$(dm_snap ps "0 32768 snapshot $BASE $PCOW P 8")
	st=$(dmsetup status "$DM_PREFIX-ps" | cut -d' ' -f4-)
	echo "# status after the crash: $st"
	case $st in
	Invalid* | 0/*) echo "no exceptions loaded after the crash"; return 1 ;;
	esac
	same "$ps" "$WORK/A"
}

t_merge2() {
	merge_layout
	local o st
	o=$(dm morigin "0 32768 snapshot-merge $MBASE $MCOW P 8")
	st=$(status_of morigin)
	echo "# status after the crash: $st"
	if [ "$(awk '{ split($1, u, "/"); print (u[1] > $2) }' <<< "$st")" != 1 ]; then
		echo "nothing left to merge after the crash: $st"
		return 1
	fi
	for _ in $(seq 1500); do
		st=$(status_of morigin)
		case $st in
		Invalid* | Merge*) echo "merge status: $st"; return 1 ;;
		esac
		[ "$(awk '{ split($1, u, "/"); print (u[1] == $2) }' <<< "$st")" = 1 ] && break
		sleep 0.2
	done
	echo "# merged: $st"
	same "$o" "$WORK/snap"
	same "$MBASE" "$WORK/snap"
}

case $PHASE in
1)	ktap_set_plan 1
	# Not run_test: the test must leave its devices and writers running.
	name="crash: heavy origin writes to a P snapshot and a merge, then a hard stop"
	rm -f "$SKIP_REASON"
	rc=0
	(set -e; t_phase1) || rc=$?
	case $rc in
	0)	ktap_test_pass "$name"
		crash ;;
	4)	__ktap_test ok "$name" "SKIP $(cat "$SKIP_REASON")" ;;
	*)	ktap_test_fail "$name" ;;
	esac ;;
2)	ktap_set_plan 2
	run_test "crash: the P snapshot loads and holds the data from before it was taken" t_phase2
	run_test "crash: the merge goes on from the metadata, the origin holds the snapshot" t_merge2 ;;
*)	echo "Bail out! crash needs PHASE 1 or 2" ;;
esac
