# SPDX-License-Identifier: GPL-2.0
# `dmsetup table` and `dmsetup status` lines, byte for byte as C prints them.

load_impl

setup_pair() {
	need_target snapshot-origin
	need_target snapshot
	BASE=$(mkloop 16)
	COW=$(mkloop 8)
	SZ=$(sectors "$BASE")
	CSZ=$(sectors "$COW")
	B=$(devno "$BASE")
	C=$(devno "$COW")
}

t_table() {
	need_store "$1"
	local store=$1 chunk=$2
	shift 2
	setup_pair
	dm snap "0 $SZ snapshot $BASE $COW $store $chunk${*:+ $*}" >/dev/null
	expect "$(dmsetup table "$DM_PREFIX-snap")" \
		"0 $SZ snapshot $B $C $store $chunk${*:+ $*}" "table"
}

t_origin_lines() {
	setup_pair
	dm origin "0 $SZ snapshot-origin $BASE" >/dev/null
	expect "$(dmsetup table "$DM_PREFIX-origin")" "0 $SZ snapshot-origin $B" "table"
	expect "$(dmsetup status "$DM_PREFIX-origin")" "0 $SZ snapshot-origin " "status"
}

# t_status STORE CHUNK EXPECTED_FRESH EXPECTED_AFTER_ONE_COPY
t_status() {
	need_store "$1"
	setup_pair
	local o
	o=$(dm origin "0 $SZ snapshot-origin $BASE")
	dm_snap snap "0 $SZ snapshot $BASE $COW $1 $2" >/dev/null
	expect "$(dmsetup status "$DM_PREFIX-snap")" "0 $SZ snapshot $3" "fresh status"
	pattern A 1 | head -c 4096 > "$WORK/A"
	write_at "$o" "$WORK/A"
	expect "$(dmsetup status "$DM_PREFIX-snap")" "0 $SZ snapshot $4" "status after one copy"
}

ktap_set_plan 9
run_test "table line of N snapshot" t_table N 8
run_test "table line of P snapshot" t_table P 16
run_test "table line of PO snapshot" t_table PO 32
run_test "table line with one feature" t_table N 8 1 discard_zeroes_cow
run_test "table line with two features" t_table P 8 2 discard_zeroes_cow discard_passdown_origin
run_test "table line with two features (N)" t_table N 16 2 discard_zeroes_cow discard_passdown_origin
run_test "table and status lines of snapshot-origin" t_origin_lines
run_test "status of N snapshot" t_status N 8 "0/16384 0" "8/16384 0"
run_test "status of P snapshot" t_status P 8 "16/16384 16" "24/16384 16"
