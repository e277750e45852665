# SPDX-License-Identifier: GPL-2.0
# Table parsing: accepted and rejected tables, with C's reasons as the kernel
# log shows them ("device-mapper: table: 253:0: snapshot: <reason>"). Note
# that C reports every exception store error (store type, chunk size) as
# "Couldn't create exception store": snapshot_ctr() overwrites ti->error.

load_impl

setup_pair() {
	ORIG=$(mkloop 16)
	COW=$(mkloop 8)
	SZ=$(sectors "$ORIG")
}

t_accept() {
	need_store "$1"
	local store=$1 chunk=$2
	shift 2
	need_target snapshot
	setup_pair
	dm snap "0 $SZ snapshot $ORIG $COW $store $chunk $*" >/dev/null
}

# t_reject_store ERROR ARGS: "snapshot <origin> <cow> ARGS" is refused with ERROR.
t_reject_store() {
	need_target snapshot
	setup_pair
	dm_reject snap "0 $SZ snapshot $ORIG $COW $2" "$1"
}

t_missing_origin() {
	need_target snapshot
	setup_pair
	dm_reject snap "0 $SZ snapshot /dev/nonexistent $COW N 8" "Cannot get origin device"
}

t_missing_cow() {
	need_target snapshot
	setup_pair
	dm_reject snap "0 $SZ snapshot $ORIG /dev/nonexistent N 8" "Cannot get COW device"
}

t_same_dev() {
	need_target snapshot
	setup_pair
	dm_reject snap "0 $SZ snapshot $ORIG $ORIG N 8" "COW device cannot be the same as origin device"
	# C opens the origin read-only, then the COW device with the table's
	# mode: device-mapper reopens the one device for writing
	# (upgrade_mode()) and frees the origin's struct dm_dev, which C still
	# compares and puts, so dm logs these; ours is checked for them.
	[ "$IMPL" = c ] && return 0
	if dmesg | grep -E "dm_put_device call missing|not in table devices list"; then
		echo "a device of the refused table was put wrongly"
		return 1
	fi
}

t_origin_accept() {
	need_target snapshot-origin
	setup_pair
	dm origin "0 $SZ snapshot-origin $ORIG" >/dev/null
}

t_origin_reject() {
	need_target snapshot-origin
	setup_pair
	dm_reject origin "0 $SZ snapshot-origin $1" "$2"
}

ktap_set_plan 23
run_test "snapshot table with P accepted" t_accept P 8
run_test "snapshot table with PO accepted" t_accept PO 8
run_test "snapshot table with N accepted" t_accept N 8
run_test "store type in lower case accepted" t_accept n 16
run_test "chunk size 1024 accepted" t_accept N 1024
run_test "feature discard_zeroes_cow accepted" t_accept N 8 1 discard_zeroes_cow
run_test "features discard_zeroes_cow discard_passdown_origin accepted" \
	t_accept N 8 2 discard_zeroes_cow discard_passdown_origin
run_test "store type X rejected" t_reject_store "snapshot: Couldn't create exception store" "X 8"
run_test "store option PX rejected" t_reject_store "Unsupported persistent store option: X" "PX 8"
run_test "chunk size 3 (not a power of 2) rejected" t_reject_store "snapshot: Couldn't create exception store" "N 3"
run_test "chunk size 0 with N rejected" t_reject_store "Chunk size not set" "N 0"
run_test "chunk size too large rejected" t_reject_store "snapshot: Couldn't create exception store" "N 8388608"
run_test "chunk size not a number rejected" t_reject_store "snapshot: Couldn't create exception store" "N abc"
run_test "missing origin device rejected" t_missing_origin
run_test "missing COW device rejected" t_missing_cow
run_test "COW device same as origin rejected" t_same_dev
run_test "three arguments rejected" t_reject_store "requires 4 or more arguments" "N"
run_test "unknown feature rejected" t_reject_store "Unrecognised feature requested" "N 8 1 bogus"
run_test "discard_passdown_origin alone rejected" \
	t_reject_store "discard_passdown_origin feature depends on discard_zeroes_cow" "N 8 1 discard_passdown_origin"
run_test "feature count larger than given rejected" t_reject_store "Invalid number of feature arguments" "N 8 2 discard_zeroes_cow"
run_test "snapshot-origin table accepted" t_origin_accept
run_test "snapshot-origin without device rejected" t_origin_reject "" "origin: incorrect number of arguments"
run_test "snapshot-origin with missing device rejected" t_origin_reject /dev/nonexistent "Cannot get target device"
