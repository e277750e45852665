# SPDX-License-Identifier: GPL-2.0
# The copy-on-write throttle (snapshot_cow_threshold).
#
# The deadlock test reproduces the scenario of the 2019 dm-devel thread
# ("dm-snapshot: Reimplement the cow limit"): origin writers wait for the
# throttle while a snapshot constructor wants the origin lock for writing
# and copy completions want it for reading. On an implementation that
# sleeps with the origin lock held it hangs, which the hung-task detector
# (and the round deadline) reports.
#
# DM_SNAP_THROTTLE_ROUNDS sets the snapshot create/remove rounds (default 12),
# DM_SNAP_THROTTLE_ROUND_SECONDS the deadline of a round (default 30; more
# on the slow debug kernel, where the hung-task detector still reports a
# deadlock within 10 s).

load_impl
ROUNDS=${DM_SNAP_THROTTLE_ROUNDS:-12}
ROUND_SECONDS=${DM_SNAP_THROTTLE_ROUND_SECONDS:-30}
THRESHOLD=/sys/module/$MOD/parameters/snapshot_cow_threshold

HUNG_TASK=/proc/sys/kernel/hung_task_timeout_secs

# Also the hung-task timeout, for the groups after this one in a shared boot.
restore_threshold() {
	[ -z "${OLD_THRESHOLD:-}" ] || echo "$OLD_THRESHOLD" > "$THRESHOLD"
	[ -z "${OLD_HUNG_TASK:-}" ] || echo "$OLD_HUNG_TASK" > "$HUNG_TASK"
}

# delayed NAME MIB MS: a loop device behind dm-delay (MS milliseconds on
# every read and write): a slow COW device.
delayed() {
	local dev
	dev=$(mkloop "$2")
	dm "$1" "0 $(sectors "$dev") delay $dev 0 $3"
}

t_deadlock() {
	need_target snapshot-origin
	need_target snapshot
	need_target delay
	need_param snapshot_cow_threshold
	command -v fio >/dev/null || skip_because "fio not installed"
	OLD_THRESHOLD=$(cat "$THRESHOLD")
	trap restore_threshold EXIT
	echo 2 > "$THRESHOLD"
	# Report a task stuck for 10 s (the test kernel's default is 20 s).
	if [ -w "$HUNG_TASK" ]; then
		OLD_HUNG_TASK=$(cat "$HUNG_TASK")
		echo 10 > "$HUNG_TASK"
	fi
	local base sz origin cow round deadline pid rc=0
	base=$(mkloop 64)
	sz=$(sectors "$base")
	origin=$(dm origin "0 $sz snapshot-origin $base")
	cow=$(delayed cow0 72 20)
	dm_snap s0 "0 $sz snapshot $base $cow N 8" >/dev/null
	fio --name=writer --filename="$origin" --numjobs=16 --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --size=64M --time_based --runtime=600 \
		--group_reporting --output="$WORK/fio.log" &
	pid=$!
	sleep 2
	# Each round creates and removes a snapshot of the same origin, which
	# takes the origin lock for writing, while the writers hit the throttle.
	deadline=$((SECONDS + ROUND_SECONDS * ROUNDS))
	for round in $(seq "$ROUNDS"); do
		cow=$(delayed "cow$round" 8 20)
		dm_snap "r$round" "0 $sz snapshot $base $cow N 8" >/dev/null
		sleep 0.5
		dm_remove r$round
		dm_remove cow$round
		if [ "$SECONDS" -gt "$deadline" ]; then
			echo "only $round of $ROUNDS rounds within the deadline"
			rc=1
			break
		fi
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" || true
	echo "# $round rounds in $((SECONDS - deadline + ROUND_SECONDS * ROUNDS)) s"
	if dmsetup message "$DM_PREFIX-s0" 0 stats > "$WORK/stats" 2>/dev/null; then
		echo "# s0: $(cat "$WORK/stats")"
	fi
	return $rc
}

# Ours: the counters are visible, and a write burst never takes the copies
# in flight beyond threshold + 1.
t_stats() {
	need_target snapshot-origin
	need_target snapshot
	need_param snapshot_cow_threshold
	command -v fio >/dev/null || skip_because "fio not installed"
	local base sz origin cow stats max waits
	base=$(mkloop 32)
	sz=$(sectors "$base")
	origin=$(dm origin "0 $sz snapshot-origin $base")
	cow=$(delayed cow0 40 10)
	dm_snap s0 "0 $sz snapshot $base $cow N 8" >/dev/null
	dmsetup message "$DM_PREFIX-s0" 0 stats > "$WORK/stats" 2>/dev/null ||
		skip_because "$MOD has no stats message"
	OLD_THRESHOLD=$(cat "$THRESHOLD")
	trap restore_threshold EXIT
	echo 3 > "$THRESHOLD"
	fio --name=writer --filename="$origin" --numjobs=16 --rw=randwrite --bs=4k \
		--direct=1 --ioengine=psync --size=32M --time_based --runtime=10 \
		--output="$WORK/fio.log"
	stats=$(dmsetup message "$DM_PREFIX-s0" 0 stats)
	echo "# $stats"
	max=$(echo "$stats" | awk '{for (i = 1; i < NF; i++) if ($i == "max_in_progress") print $(i + 1)}')
	waits=$(echo "$stats" | awk '{for (i = 1; i < NF; i++) if ($i == "throttled_waits") print $(i + 1)}')
	[ "$max" -le 4 ] || { echo "max_in_progress $max above threshold + 1"; return 1; }
	[ "$waits" -gt 0 ] || { echo "16 writers never waited at threshold 3"; return 1; }
	expect "$(echo "$stats" | awk '{print $2}')" 0 "copies in flight after the writers stopped"
}

ktap_set_plan 2
run_test "no deadlock: throttled origin writers while snapshots come and go" t_deadlock
run_test "throttle counters visible; copies stay within threshold + 1" t_stats
