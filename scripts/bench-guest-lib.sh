# SPDX-License-Identifier: GPL-2.0
#
# Sourced by the guest sides of make bench and make bench-scale: the
# module of each implementation compared. KDIR is the kernel tree.

# ko_of IMPL: the module of c, rust, or base (another build of ours, the
# module BENCH_BASE_KO, to compare two versions).
ko_of() {
	case $1 in
	c)	echo "$KDIR/drivers/md/dm-snapshot.ko" ;;
	rust)	echo "$KDIR/drivers/md/dm_snapshot_rs.ko" ;;
	base)	echo "${BENCH_BASE_KO:?}" ;;
	esac
}

bench_load() { insmod "$(ko_of "$1")"; }

# bench_unload IMPL: every build of ours is the module dm_snapshot_rs,
# whatever its file's name.
bench_unload() { if [ "$1" = c ]; then rmmod dm_snapshot; else rmmod dm_snapshot_rs; fi; }
