# SPDX-License-Identifier: GPL-2.0
# Crash consistency of the persistent store. Phase 1 takes a P snapshot
# and stops the guest hard (sysrq b: an immediate reset, with no sync and
# no device shutdown) in the middle of heavy origin writes; the host boots the guest again on the
# same disk for phase 2, which loads the snapshot and reads it back: every
# chunk must hold what the origin held before the snapshot was taken, the
# chunks with exceptions (copied before their origin write went ahead) and
# the ones without (never written, since a write waits for its copy to be
# on disk) alike.
#
# Disk layout (64 MiB virtio disk): origin 16 MiB | P COW 32 MiB

DISK=${PERSIST_DISK:-$(ls /dev/vda /dev/sda 2>/dev/null | head -n1)}
load_impl

layout() {
	need_target snapshot-origin
	need_target snapshot
	need_store P
	[ "$(sectors "$DISK")" -ge 98304 ] || { echo "$DISK too small"; return 1; }
	BASE=$(dm base "0 32768 linear $DISK 0")
	PCOW=$(dm pcow "0 65536 linear $DISK 32768")
	pattern A 16 > "$WORK/A"
}

t_phase1() {
	layout
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
}

# The guest stops here, writes in flight: no sync, no teardown. The host
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

case $PHASE in
1)	ktap_set_plan 1
	# Not run_test: the test must leave its devices and writers running.
	name="crash: heavy origin writes to a P snapshot, then a hard stop"
	rm -f "$SKIP_REASON"
	rc=0
	(set -e; t_phase1) || rc=$?
	case $rc in
	0)	ktap_test_pass "$name"
		crash ;;
	4)	__ktap_test ok "$name" "SKIP $(cat "$SKIP_REASON")" ;;
	*)	ktap_test_fail "$name" ;;
	esac ;;
2)	ktap_set_plan 1
	run_test "crash: the P snapshot loads and holds the data from before it was taken" t_phase2 ;;
*)	echo "Bail out! crash needs PHASE 1 or 2" ;;
esac
