# SPDX-License-Identifier: GPL-2.0
# Persistence across a guest reboot. The host runs phase 1, then boots the
# guest again on the same disk (64 MiB at least; virtio: /dev/vda, or /dev/sda) for
# phase 2.
#
# Disk layout: origin 16 MiB | P COW 8 MiB | N COW 8 MiB

DISK=${PERSIST_DISK:-$(ls /dev/vda /dev/sda 2>/dev/null | head -n1)}
load_impl

layout() {
	need_target snapshot-origin
	need_target snapshot
	[ "$(sectors "$DISK")" -ge 65536 ] || { echo "$DISK too small"; return 1; }
	BASE=$(dm base "0 32768 linear $DISK 0")
	PCOW=$(dm pcow "0 16384 linear $DISK 32768")
	NCOW=$(dm ncow "0 16384 linear $DISK 49152")
	pattern A 16 > "$WORK/A"
	pattern B 4 > "$WORK/B"
	pattern C 1 > "$WORK/C"
	splice "$WORK/A" "$WORK/B" 2048 > "$WORK/AB"
	splice "$WORK/A" "$WORK/C" 8192 > "$WORK/AC"
}

t_phase1() {
	layout
	write_at "$BASE" "$WORK/A"
	local o ps= ns
	o=$(dm origin "0 32768 snapshot-origin $BASE")
	# Without a persistent store, phase 2 still checks the transient one.
	if has_store P; then
		ps=$(dm_snap ps "0 32768 snapshot $BASE $PCOW P 8")
	fi
	ns=$(dm_snap ns "0 32768 snapshot $BASE $NCOW N 8")
	write_at "$o" "$WORK/B" 2048
	if [ -n "$ps" ]; then
		write_at "$ps" "$WORK/C" 8192
		same "$ps" "$WORK/AC"
	fi
	same "$ns" "$WORK/A"
	same "$o" "$WORK/AB"
}

t_phase2_persistent() {
	need_store P
	layout
	local o ps
	o=$(dm origin "0 32768 snapshot-origin $BASE")
	ps=$(dm_snap ps "0 32768 snapshot $BASE $PCOW P 8")
	same "$o" "$WORK/AB"
	same "$ps" "$WORK/AC"
	# 1024 exceptions of 4 KiB copied for the origin write and 256 written to
	# the snapshot: 1280 data chunks, the header and 6 metadata areas of 256
	# exceptions each (the last one new and empty): 1287 chunks of 8 sectors.
	expect "$(dmsetup status "$DM_PREFIX-ps" | cut -d' ' -f4-)" "10296/16384 56" "status"
}

t_phase2_chunk_from_disk() {
	need_store P
	layout
	dm ps "0 32768 snapshot $BASE $PCOW P 0" >/dev/null
	expect "$(dmsetup table "$DM_PREFIX-ps" | awk '{print $6, $7}')" "P 8" "store and chunk size"
}

t_phase2_transient() {
	layout
	local ns
	dm origin "0 32768 snapshot-origin $BASE" >/dev/null
	ns=$(dm_snap ns "0 32768 snapshot $BASE $NCOW N 8")
	# A transient snapshot does not come back: it starts empty, as the origin.
	same "$ns" "$WORK/AB"
	expect "$(dmsetup status "$DM_PREFIX-ns" | cut -d' ' -f4-)" "0/16384 0" "status"
}

case $PHASE in
1)	ktap_set_plan 1
	run_test "persist: write origin and snapshots before reboot" t_phase1 ;;
2)	ktap_set_plan 3
	run_test "persist: P snapshot keeps exceptions and data across reboot" t_phase2_persistent
	run_test "persist: P with chunk size 0 takes it from the disk" t_phase2_chunk_from_disk
	run_test "persist: N snapshot does not come back after reboot" t_phase2_transient ;;
*)	echo "Bail out! persist needs PHASE 1 or 2"; exit 1 ;;
esac
