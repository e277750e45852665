# SPDX-License-Identifier: GPL-2.0
#
# Guest-side helpers for the dm-snapshot selftests. Sourced by run.sh.
#
# DM_SNAP_IMPL=c|rust picks the implementation under test: the C
# dm-snapshot.ko of the test kernel, or our dm_snapshot_rs.ko.

shopt -s inherit_errexit

: "${KDIR:?KDIR must name the test kernel tree}"
: "${TOP:?TOP must name the repository}"
IMPL=${DM_SNAP_IMPL:-rust}

# The kernel's own KTAP helpers.
. "$KDIR/tools/testing/selftests/kselftest/ktap_helpers.sh"

case $IMPL in
c)	MOD=dm_snapshot
	KO=$KDIR/drivers/md/dm-snapshot.ko ;;
rust)	MOD=dm_snapshot_rs
	# The test kernel builds ours in tree (CONFIG_DM_SNAPSHOT_RUST=m).
	# DM_SNAP_KO: another build of ours (the test-only buggy throttle,
	# the out-of-tree module of make module).
	KO=${DM_SNAP_KO:-$KDIR/drivers/md/dm_snapshot_rs.ko} ;;
*)	echo "Bail out! DM_SNAP_IMPL must be c or rust, not '$IMPL'"; exit 1 ;;
esac

WORK=/tmp/dm-snap-test
mkdir -p "$WORK"
SKIP_REASON=$WORK/skip-reason
DM_PREFIX=dmst

load_impl() {
	grep -qw "^$MOD" /proc/modules && return 0
	insmod "$KO"
}

unload_impl() {
	grep -qw "^$MOD" /proc/modules || return 0
	rmmod "$MOD"
}

# A skipped test names the feature it needs; the line reads
# "ok N name # SKIP <feature>". Tests run in their own subshell (run_test),
# so this ends the test.
skip_because() {
	echo "$*" > "$SKIP_REASON"
	exit 4
}

# need_target NAME: skip unless the implementation registers target NAME.
need_target() {
	dmsetup targets | grep -q "^$1 " || skip_because "$1 target not registered by $MOD"
}

# need_param NAME: skip unless the module has parameter NAME.
need_param() {
	[ -e "/sys/module/$MOD/parameters/$1" ] || skip_because "module parameter $1 not in $MOD"
}

# has_store TYPE: whether the implementation has exception store TYPE
# (N, P or PO). Probed once per boot with a small snapshot table.
has_store() {
	local flag=$WORK/store-$1 o c
	if [ ! -e "$flag" ]; then
		o=$(mkloop 1)
		c=$(mkloop 1)
		if dmsetup create "$DM_PREFIX-probe" --table "0 2048 snapshot $o $c $1 8" 2>/dev/null; then
			echo yes > "$flag"
			dm_remove probe
		else
			echo no > "$flag"
		fi
		losetup -d "$o" "$c"
	fi
	[ "$(cat "$flag")" = yes ]
}

# need_store TYPE: skip unless the implementation has exception store TYPE.
need_store() {
	has_store "$1" || skip_because "exception store $1 not in $MOD"
}

# Remove every device-mapper device and loop device the tests made.
cleanup_devices() {
	local d
	for d in $(dmsetup ls 2>/dev/null | awk -v p="$DM_PREFIX" 'index($1, p) == 1 {print $1}' | sort -r); do
		dmsetup remove --retry "$d" >/dev/null 2>&1 || dmsetup remove --force "$d" >/dev/null 2>&1 || true
	done
	losetup -D 2>/dev/null || true
	rm -f "$WORK"/*.img
}

# run_test NAME FUNC [ARGS...]: run one test in a subshell with set -e.
# Status 0 passes, 4 skips (reason from skip_because), anything else fails.
# Each test's time goes with its diagnostics ("# took N s"), so the next
# slow one is seen.
run_test() {
	local name=$1 rc=0 t0=$SECONDS
	shift
	rm -f "$SKIP_REASON"
	# Not "( ... ) || rc=$?": errexit is ignored on the left of ||.
	(set -e; "$@") > "$WORK/out" 2>&1 &
	wait $! || rc=$?
	cleanup_devices
	echo "# took $((SECONDS - t0)) s"
	case $rc in
	0)	# A passing test's own diagnostics ("# ..." lines) are kept.
		grep '^# ' "$WORK/out" || true
		ktap_test_pass "$name" ;;
	4)	if [ -s "$SKIP_REASON" ]; then
			__ktap_test ok "$name" "SKIP $(cat "$SKIP_REASON")"
			KTAP_CNT_SKIP=$((KTAP_CNT_SKIP + 1))
		else
			sed 's/^/# /' "$WORK/out"
			ktap_test_fail "$name"
		fi ;;
	*)	sed 's/^/# /' "$WORK/out"
		ktap_test_fail "$name" ;;
	esac
}

# ---- udev -------------------------------------------------------------------

# stop_udevd: udevd and its workers gone (at most half a minute later), and
# dmsetup making its own device nodes; start_udevd: udevd started again,
# if stop_udevd stopped one.
UDEVD=
stop_udevd() {
	UDEVD=
	if pgrep -x systemd-udevd > /dev/null; then
		UDEVD=$(ls /usr/lib/systemd/systemd-udevd /lib/systemd/systemd-udevd 2> /dev/null | head -n 1)
		udevadm settle --timeout=60 2> /dev/null || true
	fi
	udevadm control --exit 2> /dev/null || true
	pkill -x systemd-udevd 2> /dev/null || true
	# Its workers too (forked, same name).
	for _ in $(seq 30); do
		pgrep -x systemd-udevd > /dev/null || break
		sleep 1
	done
	# Its socket stays behind; libdevmapper takes it for a running udev.
	rm -f /run/udev/control
	export DM_DISABLE_UDEV=1
}
start_udevd() {
	[ -n "$UDEVD" ] || return 0
	"$UDEVD" --daemon > /dev/null 2>&1 || echo "# could not start $UDEVD again"
	udevadm settle --timeout=60 || true
	unset DM_DISABLE_UDEV
}

# ---- devices ----------------------------------------------------------------

# mkloop SIZE_MIB: a zeroed loop device on tmpfs; prints its path.
mkloop() {
	local img
	img=$(mktemp "$WORK/XXXXXX.img")
	truncate -s "${1}M" "$img"
	losetup --show -f "$img"
}

sectors() { blockdev --getsz "$1"; }
devno() { local d; d=$(readlink -f "$1"); printf '%d:%d' "0x$(stat -c %t "$d")" "0x$(stat -c %T "$d")"; }

# dm NAME TABLE: create a device; fail the test with the kernel's reason.
dm() {
	local name=$DM_PREFIX-$1
	shift
	if ! dmsetup create "$name" --table "$*" 2> "$WORK/dmerr"; then
		cat "$WORK/dmerr" >&2
		dmesg | tail -n 3 >&2
		return 1
	fi
	echo "/dev/mapper/$name"
}

# dm_remove NAME...: remove the test's devices NAME ($DM_PREFIX-NAME). With
# udevd running, a device closed after writing gets a change event whose
# blkid opens it for a moment; a remove then fails with EBUSY. So a remove
# that fails is tried again once udev's events are done, with retries as
# LVM does (settling before every remove made compat's replay test take
# twice as long).
dm_remove() {
	local m
	for m in "$@"; do
		dmsetup remove "$DM_PREFIX-$m" 2> /dev/null && continue
		udevadm settle --timeout=30 2> /dev/null || true
		dmsetup remove --retry "$DM_PREFIX-$m"
	done
}

# dm_snap NAME TABLE: create a snapshot, then suspend and resume the origin
# (dmst-origin) as LVM does, so the origin learns the new chunk size and
# splits its writes at chunk boundaries.
dm_snap() {
	dm "$@"
	if dmsetup info "$DM_PREFIX-origin" >/dev/null 2>&1; then
		dmsetup suspend "$DM_PREFIX-origin"
		dmsetup resume "$DM_PREFIX-origin"
	fi
}

# refused NAME REASON...: after "dmsetup create NAME" failed (kernel log
# cleared before it), the log must give each REASON, and no device NAME may
# be left behind.
refused() {
	local name=$1 reason
	shift
	for reason in "$@"; do
		if ! dmesg | grep -qF -- "$reason"; then
			echo "expected reason '$reason' in the kernel log, got:"
			dmesg | tail -n 5
			return 1
		fi
	done
	if dmsetup info "$name" >/dev/null 2>&1; then
		echo "refused table left device $name behind"
		return 1
	fi
}

# dm_reject NAME TABLE ERROR: the table must be refused, the kernel log must
# give ERROR as the reason, and no device may be left behind.
dm_reject() {
	local name=$DM_PREFIX-$1 table=$2
	dmesg -C
	if dmsetup create "$name" --table "$table" 2>/dev/null; then
		echo "table accepted, expected rejection: $table"
		return 1
	fi
	refused "$name" "$3"
}

# ---- data ---------------------------------------------------------------------

# pattern SEED MIB: deterministic pseudo-random data on stdout.
pattern() {
	openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -pbkdf2 < /dev/zero 2>/dev/null |
		head -c $(($2 * 1048576))
}

# write_at DEV FILE [OFFSET_KIB]: write FILE to DEV with O_DIRECT.
write_at() {
	dd if="$2" of="$1" bs=64k oflag=direct,seek_bytes seek="$((${3:-0} * 1024))" \
		conv=notrunc,fsync status=none
}

# lvm_private [SETTING...]: a private LVM configuration for the test, in
# $WORK/lvm: loop devices only, no udev, no daemons, with SETTINGs added to
# its activation section. lvm_q runs an LVM command quietly, with the
# descriptors LVM warns about closed.
lvm_private() {
	export LVM_SYSTEM_DIR=$WORK/lvm
	mkdir -p "$LVM_SYSTEM_DIR"
	cat > "$LVM_SYSTEM_DIR/lvm.conf" <<-EOC
		devices { scan = [ "/dev" ] filter = [ "a|^/dev/loop|", "r|.*|" ] obtain_device_list_from_udev = 0 }
		global { use_lvmlockd = 0 locking_dir = "$WORK/lvmlock" }
		activation { udev_sync = 0 udev_rules = 0 monitoring = 0 $* }
	EOC
}
lvm_q() { "$@" -q 3>&- 4>&- 5>&- 6>&-; }

# write_backwards DEV FILE OFFSET_KIB: write FILE to DEV at OFFSET_KIB in
# 4 KiB blocks with O_DIRECT, from the last block back, so that no two
# blocks written one after the other are next to each other on DEV. One
# process: a dd a block takes minutes on a TCG guest.
write_backwards() {
	python3 - "$1" "$2" "$3" <<-'EOF'
		import mmap, os, sys
		dev, path, off = sys.argv[1], sys.argv[2], int(sys.argv[3]) * 1024
		data = open(path, "rb").read()
		fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
		buf = mmap.mmap(-1, 4096)
		for i in reversed(range(len(data) // 4096)):
		    buf[:] = data[i * 4096:(i + 1) * 4096]
		    os.pwrite(fd, buf, off + i * 4096)
		os.close(fd)
	EOF
}

# splice BASE FILE OFFSET_KIB: BASE as it reads after write_at wrote FILE
# over it at OFFSET_KIB, on stdout.
splice() {
	local off=$(($3 * 1024)) n
	n=$(stat -c %s "$2")
	head -c "$off" "$1"
	cat "$2"
	tail -c +$((off + n + 1)) "$1"
}

# same DEV FILE: DEV's first bytes (read with O_DIRECT) equal FILE.
same() {
	local n
	n=$(stat -c %s "$2")
	if ! dd if="$1" bs=64k iflag=direct,count_bytes count="$n" status=none | cmp -s - "$2"; then
		echo "content of $1 differs from $2"
		return 1
	fi
}

# expect ACTUAL EXPECTED [WHAT]
expect() {
	if [ "$1" != "$2" ]; then
		echo "${3:-value}: got '$1', expected '$2'"
		return 1
	fi
}
