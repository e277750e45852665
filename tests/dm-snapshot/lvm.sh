# SPDX-License-Identifier: GPL-2.0
# LVM2 snapshots on top of the targets: lvcreate -s, writes, lvs, lvremove.

load_impl

lvm_private

cleanup_lvm() {
	lvm_q vgremove -f "$DM_PREFIX"vg >/dev/null 2>&1 || true
}

t_lvm_snapshot() {
	need_store P
	need_target snapshot-origin
	need_target snapshot
	local pv vg=${DM_PREFIX}vg
	pv=$(mkloop 64)
	trap cleanup_lvm EXIT
	lvm_q pvcreate "$pv" >/dev/null
	lvm_q vgcreate "$vg" "$pv" >/dev/null
	lvm_q lvcreate -n lv -L 16M -Zn -y "$vg" >/dev/null 2>&1
	pattern A 16 > "$WORK/A"
	write_at "/dev/$vg/lv" "$WORK/A"
	lvm_q lvcreate -s -n snap -L 8M -y "$vg/lv" >/dev/null
	expect "$(dmsetup table "$vg-snap" | awk '{print $3, $6, $7}')" "snapshot P 8" "snapshot table"
	pattern B 2 > "$WORK/B"
	write_at "/dev/$vg/lv" "$WORK/B" 1024
	same "/dev/$vg/snap" "$WORK/A"
	splice "$WORK/A" "$WORK/B" 1024 > "$WORK/exp"
	same "/dev/$vg/lv" "$WORK/exp"
	# 2 MiB of 8 MiB copied, plus metadata: lvs reports the snapshot in use.
	local used
	used=$(lvm_q lvs --noheadings -o data_percent "$vg/snap" | tr -d ' ')
	case $used in
	0.00|"") echo "lvs reports no usage: '$used'"; return 1 ;;
	esac
	lvm_q lvremove -f "$vg/snap" >/dev/null
	same "/dev/$vg/lv" "$WORK/exp"
}

ktap_set_plan 1
run_test "LVM2 snapshot keeps the old data and is removed cleanly" t_lvm_snapshot
