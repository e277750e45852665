#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make series: the work as a patch series for the 6.12 tree, written by git
# format-patch, one concept a patch, in dependency order:
#
#   - each patch of patches/ (the kernel crate's abstractions), together
#     with the files of the overlay it declares: rust/kernel/X.rs and
#     rust/kernel/X/ for a "mod X;" it adds to rust/kernel/lib.rs,
#     rust/kernel/sync/X.rs for one in rust/kernel/sync.rs, and
#     rust/helpers/X.c for an #include "X.c" in rust/helpers/helpers.c;
#   - the target: drivers/md/dm_snapshot_rs.rs with dm_snap/ and
#     dm_snap_core/, its Kconfig entry (DM_SNAPSHOT_RUST), its Makefile
#     line and its MAINTAINERS entry;
#   - its admin-guide page, linked from the device-mapper index.
#
# The commits are made in a git repository of the unpacked source
# ($CACHE/series-tree, kept for the next run), with git am for the
# patches. The series goes to OUT (default $CACHE/series); then each patch
# must pass checkpatch.pl --strict, and the series must apply with git am
# to the untouched tree. SERIES_BISECT=1 also builds the tree at each
# commit (tinyconfig and the test kernel's fragment, DM_SNAPSHOT_RUST=m):
# a kernel build a patch.
#
# Usage: series.sh [OUT]

. "$(dirname "$0")/lib.sh"

OUT=${1:-$CACHE/series}
TREE=$CACHE/series-tree
AUTHOR="dm-snapshot-rs developers <dev@dm-snapshot-rs.invalid>"
export GIT_AUTHOR_NAME="dm-snapshot-rs developers" GIT_AUTHOR_EMAIL=dev@dm-snapshot-rs.invalid
export GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
g() { git -C "$TREE" "$@"; }

[ -f "$KSRC_TARBALL" ] || die "$KSRC_TARBALL missing: run scripts/setup.sh"
src=$(sha256sum "$KSRC_TARBALL" | cut -c1-16)
if [ "$(cat "$TREE/.git/dm-snap-source" 2>/dev/null)" != "$src" ]; then
	log "unpacking $(basename "$KSRC_TARBALL") into $TREE (a git repository)"
	rm -rf "$TREE"
	mkdir -p "$TREE"
	tar -xJf "$KSRC_TARBALL" -C "$TREE" --strip-components=1
	g init -q
	# Debian's .gitignore ignores everything at the top level: -f.
	g add -f -A .
	g commit -q -m "Linux $(make -s -C "$TREE" kernelversion)"
	g tag base
	echo "$src" > "$TREE/.git/dm-snap-source"
fi
g am --abort > /dev/null 2>&1 || true
g checkout -q --detach base
g reset -q --hard base
g clean -q -fdx

# claimed PATCH: the overlay files PATCH declares.
claimed() {
	local m
	for m in $(sed -nE 's/^\+(pub )?mod ([a-z_0-9]+);$/\2/p' <(awk '/^\+\+\+ b\/rust\/kernel\/lib.rs/ { on = 1; next } /^\+\+\+ / { on = 0 } on' "$1")); do
		[ -f "$TOP/rust/kernel/$m.rs" ] && echo "rust/kernel/$m.rs"
		[ -d "$TOP/rust/kernel/$m" ] && (cd "$TOP" && find "rust/kernel/$m" -type f | sort)
	done
	for m in $(sed -nE 's/^\+(pub )?mod ([a-z_0-9]+);$/\2/p' <(awk '/^\+\+\+ b\/rust\/kernel\/sync.rs/ { on = 1; next } /^\+\+\+ / { on = 0 } on' "$1")); do
		echo "rust/kernel/sync/$m.rs"
	done
	sed -nE 's|^\+#include "([a-z_0-9]+)\.c"$|rust/helpers/\1.c|p' "$1"
}

all_claimed=$(mktemp)
for p in $(overlay_patches); do
	log "$(basename "$p")"
	g am -q "$p" || die "git am $p failed"
	files=$(claimed "$p")
	for f in $files; do
		[ -f "$TOP/$f" ] || die "$p declares $f, which the overlay lacks"
		mkdir -p "$(dirname "$TREE/$f")"
		cp "$TOP/$f" "$TREE/$f"
		g add -f "$f"
		echo "$f" >> "$all_claimed"
	done
	[ -z "$files" ] || g commit -q --amend --no-edit
done
unclaimed=$(overlay_files | grep -vxFf "$all_claimed" || true)
rm -f "$all_claimed"
[ -z "$unclaimed" ] || die "overlay files no patch declares: $unclaimed"

# The target.
log "the target"
target_files | while read -r f; do
	mkdir -p "$(dirname "$TREE/$f")"
	cp "$TOP/$f" "$TREE/$f"
done
python3 "$TOP/scripts/target-kconfig.py" "$TREE"
g add -f -A drivers/md MAINTAINERS
g commit -q -F - <<EOF
dm snapshot: add the snapshot targets in Rust

Add dm_snapshot_rs, the snapshot-origin, snapshot and snapshot-merge
targets of drivers/md/dm-snap.c written in Rust over the kernel crate's
device-mapper abstractions, behind CONFIG_DM_SNAPSHOT_RUST. It is a
drop-in replacement for dm-snapshot.ko: the same target names, table
and status lines, module parameters (snapshot_cow_threshold,
snapshot_copy_throttle) and persistent COW format, and it answers to the
same module aliases, so LVM2 snapshots work unchanged.

Its COW throttle is that of the 2019 dm-devel thread, with origin
writers that sleep for it holding no lock, and goes further: writes that
need no copy are not throttled, a write to a chunk whose copy is in
flight is queued on that copy, and a waiter is woken only when a slot is
free for it. The on-disk format, chunk arithmetic, exception tables and
throttle policy (dm_snap_core/) need no kernel and are tested on the host
as well. The target itself has no unsafe code.

Signed-off-by: $AUTHOR
EOF

# The documentation.
log "the documentation"
cp "$TOP/Documentation/admin-guide/device-mapper/snapshot-rs.rst" \
	"$TREE/Documentation/admin-guide/device-mapper/"
sed -i 's/^    snapshot$/    snapshot\n    snapshot-rs/' "$TREE/Documentation/admin-guide/device-mapper/index.rst"
grep -qx '    snapshot-rs' "$TREE/Documentation/admin-guide/device-mapper/index.rst" ||
	die "no place for snapshot-rs in the device-mapper index"
g add -f -A Documentation
g commit -q -F - <<EOF
Documentation: dm snapshot: the Rust snapshot targets

Describe dm_snapshot_rs in the device-mapper admin guide: building and
loading it, its table and status lines, the persistent store, merging,
its module parameters, its selftests and benchmarks, and the design of
its COW throttle.

Signed-off-by: $AUTHOR
EOF

rm -rf "$OUT"
mkdir -p "$OUT"
g format-patch -q -o "$OUT" base..HEAD
n=$(ls "$OUT"/*.patch | wc -l)
log "$n patches in $OUT"

rc=0
# FILE_PATH_CHANGES asks whether MAINTAINERS needs an entry for new files:
# the target's patch adds one, and rust/ has its own (RUST).
for p in "$OUT"/*.patch; do
	"$TREE/scripts/checkpatch.pl" --strict --quiet --show-types \
		--ignore FILE_PATH_CHANGES --root="$TREE" "$p" > "$OUT/checkpatch.log" 2>&1 ||
		{ log "checkpatch: $(basename "$p")"; cat "$OUT/checkpatch.log"; rc=1; }
done
rm -f "$OUT/checkpatch.log"
[ $rc = 0 ] && log "checkpatch --strict: clean"

# The series as someone applies it: git am onto the untouched tree.
g checkout -q --detach base
g am -q "$OUT"/*.patch || die "the series does not apply with git am"
log "the series applies with git am"

if [ "${SERIES_BISECT:-0}" = 1 ]; then
	KDIR=$TREE
	for c in $(g rev-list --reverse base..HEAD); do
		g checkout -q "$c"
		log "building at $(g log --format=%s -1)"
		make_kernel tinyconfig > /dev/null
		(cd "$TREE" && scripts/kconfig/merge_config.sh -m .config "$FRAGMENT" > /dev/null)
		make_kernel olddefconfig > /dev/null
		make_kernel > "$OUT/build.log" 2>&1 ||
			{ log "the build fails at $(g log --format=%s -1): $OUT/build.log"; rc=1; break; }
	done
	[ $rc = 0 ] && log "the tree builds after every patch"
fi
exit $rc
