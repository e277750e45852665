# SPDX-License-Identifier: GPL-2.0
# LVM2 snapshots on top of the targets: lvcreate -s, several snapshots, lvs
# Data%, a snapshot filling up, lvextend of a snapshot (a table reload
# with exception handover), lvconvert --merge, lvremove.

load_impl

# A private LVM configuration (lvm_private). The merge's completion is
# polled in the background (lvm lvpoll, forked by the activation), every
# second.
lvm_private polling_interval = 1 snapshot_autoextend_threshold = 100

VG=${DM_PREFIX}vg

cleanup_lvm() {
	lvm_q vgremove -f "$VG" >/dev/null 2>&1 || true
}

# lvm_setup MIB: a VG on a loop device of MIB, with a 16 MiB LV "lv"
# holding pattern A ($WORK/A); removed when the test ends.
lvm_setup() {
	local pv
	pv=$(mkloop "$1")
	trap cleanup_lvm EXIT
	# Each LVM command takes seconds under TCG: vgcreate makes the PV too.
	lvm_q vgcreate "$VG" "$pv" >/dev/null
	lvm_q lvcreate -n lv -L 16M -Zn -y "$VG" >/dev/null
	pattern A 16 > "$WORK/A"
	write_at "/dev/$VG/lv" "$WORK/A"
}

# snap NAME SIZE [ARGS...]: a classic snapshot of lv.
snap() {
	local n=$1 sz=$2
	shift 2
	lvm_q lvcreate -s -n "$n" -L "$sz" -y "$@" "$VG/lv" >/dev/null
}

# usage NAME: the snapshot's "used/total" sectors from its status line.
usage() {
	dmsetup status "$VG-$1" | awk '{print $4}'
}

# data_percent NAME: lvs' Data% of a snapshot.
data_percent() {
	lvm_q lvs --noheadings -o data_percent "$VG/$1" | tr -d ' '
}

# lvs_agrees NAME [DATA%]: lvs' Data% (DATA% if given, from an lvs run
# for several LVs) is the status line's used/total, to 0.01 (0 while only
# metadata is used, as LVM2 reports it).
lvs_agrees() {
	local st p
	st=$(dmsetup status "$VG-$1" | cut -d' ' -f4-)
	p=${2:-$(data_percent "$1")}
	if ! awk -v st="$st" -v p="$p" 'BEGIN {
		split(st, f, "[/ ]"); e = f[1] == f[3] ? 0 : f[1] * 100 / f[2]
		d = e - p; exit !(d < 0.011 && d > -0.011) }'; then
		echo "lvs Data% of $1 is '$p', its status is '$st'"
		return 1
	fi
	echo "# $1: status $st, Data% $p"
}

# Three snapshots taken between writes each keep their own time's data;
# lvs' Data% follows what each one holds; removing one leaves the others,
# removing the origin removes the rest.
t_lvm_snapshots() {
	need_store P
	need_target snapshot-origin
	need_target snapshot
	lvm_setup 80
	snap s1 8M
	pattern B 2 > "$WORK/B"
	write_at "/dev/$VG/lv" "$WORK/B" 1024
	splice "$WORK/A" "$WORK/B" 1024 > "$WORK/AB"
	snap s2 8M
	pattern C 2 > "$WORK/C"
	write_at "/dev/$VG/lv" "$WORK/C" 8192
	splice "$WORK/AB" "$WORK/C" 8192 > "$WORK/ABC"
	snap s3 8M
	expect "$(dmsetup table "$VG-s2" | awk '{print $3, $6, $7}')" "snapshot P 8" "snapshot table"
	same "/dev/$VG/s1" "$WORK/A"
	same "/dev/$VG/s2" "$WORK/AB"
	same "/dev/$VG/s3" "$WORK/ABC"
	same "/dev/$VG/lv" "$WORK/ABC"
	local s p u1 u2 u3
	lvm_q lvs --noheadings -o lv_name,data_percent "$VG" > "$WORK/lvs"
	for s in s1 s2 s3; do
		p=$(awk -v n="$s" '$1 == n {print $2}' "$WORK/lvs")
		lvs_agrees "$s" "$p"
	done
	# s1 holds 4 MiB of copies, s2 2 MiB, s3 none: only its metadata.
	u1=$(usage s1) u2=$(usage s2) u3=$(usage s3)
	if ! [ "${u1%/*}" -gt "${u2%/*}" ] || ! [ "${u2%/*}" -gt "${u3%/*}" ] || [ "${u3%/*}" -gt 64 ]; then
		echo "used sectors not as written: s1 $u1, s2 $u2, s3 $u3"
		return 1
	fi
	lvm_q lvremove -f "$VG/s2" >/dev/null
	! dmsetup info "$VG-s2" >/dev/null 2>&1 || { echo "$VG-s2 still there"; return 1; }
	write_at "/dev/$VG/lv" "$WORK/B" 12288
	splice "$WORK/ABC" "$WORK/B" 12288 > "$WORK/ABCB"
	same "/dev/$VG/s1" "$WORK/A"
	same "/dev/$VG/s3" "$WORK/ABC"
	same "/dev/$VG/lv" "$WORK/ABCB"
	# The origin goes, and its snapshots with it; nothing of the VG is left.
	lvm_q lvremove -f "$VG/lv" >/dev/null
	expect "$(dmsetup ls | grep -c "^$VG-" || true)" 0 "devices of $VG left after lvremove"
}

# A snapshot that fills up becomes invalid: status Invalid, lvs shows it
# (attribute I, Data% 100), its reads fail; the origin goes on, and
# lvremove removes the snapshot.
t_lvm_fill() {
	need_store P
	need_target snapshot-origin
	need_target snapshot
	lvm_setup 64
	snap s 4M -c 4k
	pattern B 8 > "$WORK/B"
	write_at "/dev/$VG/lv" "$WORK/B"
	expect "$(dmsetup status "$VG-s" | cut -d' ' -f4-)" Invalid "status"
	local a p
	read -r a p < <(lvm_q lvs --noheadings -o lv_attr,data_percent "$VG/s")
	expect "${a:4:1}" I "lv_attr state of $a"
	expect "$p" 100.00 "Data%"
	if dd if="/dev/$VG/s" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
		echo "read from an invalid snapshot succeeded"
		return 1
	fi
	splice "$WORK/A" "$WORK/B" 0 > "$WORK/exp"
	same "/dev/$VG/lv" "$WORK/exp"
	pattern C 2 > "$WORK/C"
	write_at "/dev/$VG/lv" "$WORK/C" 8192
	splice "$WORK/exp" "$WORK/C" 8192 > "$WORK/exp2"
	same "/dev/$VG/lv" "$WORK/exp2"
	lvm_q lvremove -f "$VG/s" >/dev/null
	! dmsetup info "$VG-s" >/dev/null 2>&1 || { echo "$VG-s still there"; return 1; }
	same "/dev/$VG/lv" "$WORK/exp2"
}

# lvextend of a snapshot grows its COW LV and reloads its table: the new
# table takes over the exceptions of the old one. It keeps the old data,
# and then holds more than the old size could.
t_lvm_extend() {
	need_store P
	need_target snapshot-origin
	need_target snapshot
	lvm_setup 64
	snap s 4M -c 4k
	pattern B 3 > "$WORK/B"
	write_at "/dev/$VG/lv" "$WORK/B"
	local before after
	before=$(usage s)
	lvm_q lvextend -L 12M "$VG/s" >/dev/null
	after=$(usage s)
	expect "${after%/*}" "${before%/*}" "used sectors after lvextend (before: $before)"
	expect "${after#*/}" $((12 * 2048)) "COW sectors after lvextend"
	lvs_agrees s
	same "/dev/$VG/s" "$WORK/A"
	# 3 + 6 MiB of copies: more than 4 MiB, less than 12.
	pattern C 6 > "$WORK/C"
	write_at "/dev/$VG/lv" "$WORK/C" 4096
	expect "$(dmsetup status "$VG-s" | cut -d' ' -f4- | grep -c Invalid || true)" 0 "snapshot invalid after lvextend"
	same "/dev/$VG/s" "$WORK/A"
	lvs_agrees s
	lvm_q lvremove -f "$VG/s" >/dev/null
}

# wait_merged: the background poll ends the merge: the snapshot LV goes
# and the origin's table is snapshot-origin again, or plain linear.
wait_merged() {
	local i
	for i in $(seq 120); do
		if ! lvm_q lvs "$VG/s" >/dev/null 2>&1 &&
			! dmsetup table "$VG-lv" | grep -q snapshot-merge; then
			return 0
		fi
		sleep 1
	done
	echo "merge not finished after 120 s:"
	dmsetup table
	dmsetup status
	return 1
}

# t_lvm_merge HOW: lvconvert --merge of a snapshot whose origin is active
# and open ("open": the merge waits for the next activation) or inactive
# ("inactive"); after the activation the merge runs, and the origin then
# reads as the snapshot did.
t_lvm_merge() {
	need_target snapshot-merge
	need_store P
	need_target snapshot-origin
	need_target snapshot
	lvm_setup 64
	snap s 8M
	pattern B 2 > "$WORK/B"
	pattern C 1 > "$WORK/C"
	# The snapshot itself is written too: the merge brings that back.
	write_at "/dev/$VG/s" "$WORK/C" 4096
	splice "$WORK/A" "$WORK/C" 4096 > "$WORK/exp"
	write_at "/dev/$VG/lv" "$WORK/B" 1024
	same "/dev/$VG/s" "$WORK/exp"
	case $1 in
	open)
		exec 7< "/dev/$VG/lv"
		lvm_q lvconvert --merge -y "$VG/s" > "$WORK/merge.out" 2>&1 || { cat "$WORK/merge.out"; return 1; }
		grep -q "next activation" "$WORK/merge.out" || { cat "$WORK/merge.out"; return 1; }
		# Nothing merged yet: the origin still has its own data.
		dmsetup table "$VG-lv" | grep -q snapshot-origin
		exec 7<&-
		lvm_q lvchange -an "$VG/lv" ;;
	inactive)
		lvm_q lvchange -an "$VG/lv"
		lvm_q lvconvert --merge -y "$VG/s" > "$WORK/merge.out" 2>&1 || { cat "$WORK/merge.out"; return 1; }
		grep -q "next activation" "$WORK/merge.out" || { cat "$WORK/merge.out"; return 1; } ;;
	esac
	lvm_q lvchange -ay "$VG/lv"
	wait_merged
	same "/dev/$VG/lv" "$WORK/exp"
	lvm_q lvremove -f "$VG/lv" >/dev/null
}

ktap_set_plan 5
run_test "LVM2: three snapshots keep their data; lvs Data%; lvremove" t_lvm_snapshots
run_test "LVM2: a snapshot filling up becomes invalid, the origin goes on" t_lvm_fill
run_test "LVM2: lvextend of a snapshot keeps its exceptions" t_lvm_extend
run_test "LVM2: lvconvert --merge with the origin open merges at next activation" t_lvm_merge open
run_test "LVM2: lvconvert --merge with the origin inactive merges at activation" t_lvm_merge inactive
