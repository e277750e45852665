# SPDX-License-Identifier: GPL-2.0
# Stress: four fio writers with verification over the origin while three
# snapshots are taken, one every third of the run; afterwards each snapshot
# must hold exactly what the origin held just before it was taken.
#
# DM_SNAP_STRESS_SECONDS sets the length of the run (default 120).
# DM_SNAP_MODEL_SECONDS the length of the model-checked run (default 120),
# DM_SNAP_MODEL_SEED its seed (default: a random one, printed).

load_impl
STRESS_SECONDS=${DM_SNAP_STRESS_SECONDS:-120}
MODEL_SECONDS=${DM_SNAP_MODEL_SECONDS:-120}
MODEL_SEED=${DM_SNAP_MODEL_SEED:-$RANDOM}

t_stress() {
	need_target snapshot-origin
	need_target snapshot
	command -v fio >/dev/null || skip_because "fio not installed"
	local base sz origin cow i chunk per
	local -a snaps
	base=$(mkloop 32)
	sz=$(sectors "$base")
	pattern A 32 > "$WORK/A"
	write_at "$base" "$WORK/A"
	origin=$(dm origin "0 $sz snapshot-origin $base")
	per=$((STRESS_SECONDS / 3))
	i=0
	for chunk in 8 16 32; do
		i=$((i + 1))
		dd if="$origin" of="$WORK/before$i" bs=1M iflag=direct status=none
		cow=$(mkloop 40)
		snaps[i]=$(dm_snap "s$i" "0 $sz snapshot $base $cow N $chunk")
		# Each writer has its own 8 MiB, so its verification holds.
		if ! fio --name=writer --filename="$origin" --numjobs=4 --size=8M \
			--offset_increment=8M --rw=randwrite --bs=4k --direct=1 \
			--ioengine=psync --verify=crc32c --verify_backlog=128 \
			--verify_fatal=1 --time_based --runtime="$per" \
			--group_reporting --output="$WORK/fio$i.log"; then
			cat "$WORK/fio$i.log"
			return 1
		fi
		grep -E 'write:|verify' "$WORK/fio$i.log" | head -n 3 | sed 's/^/# /'
	done
	for i in 1 2 3; do
		same "${snaps[i]}" "$WORK/before$i"
	done
}

# Model-checked concurrency: three writers on the origin while snapshots
# (N, P and PO stores, 4 to 16 KiB chunks) are taken and removed at
# random, each read and written by a thread of its own meanwhile, and every
# block read checked against a model of what its device must hold
# (model.py). The COW throttle lets 2 copies run at once.
t_model() {
	need_target snapshot-origin
	need_target snapshot
	need_param snapshot_cow_threshold
	local base cows=() i old rc=0
	local threshold=/sys/module/$MOD/parameters/snapshot_cow_threshold
	base=$(mkloop 16)
	for i in 1 2 3; do
		cows+=("$(mkloop 20)")
	done
	old=$(cat "$threshold")
	echo 2 > "$threshold"
	python3 "$TOP/tests/dm-snapshot/model.py" "$DM_PREFIX" "$base" "$MODEL_SECONDS" \
		"$MODEL_SEED" "${cows[@]}" || rc=$?
	echo "$old" > "$threshold"
	return "$rc"
}

ktap_set_plan 2
run_test "4 verified writers, 3 snapshots taken meanwhile: no mismatch" t_stress
run_test "origin and snapshots read and written while snapshots come and go: as the model" t_model
