#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# scripts/checkpatch.pl --strict over what goes upstream: the patch series
# and the overlay (rust/, drivers/) as one patch adding its files.
# Usage: checkpatch.sh KDIR

. "$(dirname "$0")/lib.sh"
KDIR=$1
cd "$TOP"
cp_run() { "$KDIR/scripts/checkpatch.pl" --strict --no-tree --quiet --show-types "$@"; }

rc=0
for p in $(overlay_patches); do
	# Read from stdin: checkpatch mistakes some patch file names for tree files.
	cp_run - < "$p" || { echo "in $p"; rc=1; }
done

# The overlay and the module as a patch that adds them.
{
	printf 'From: dm-snapshot-rs developers <dev@dm-snapshot-rs.invalid>\n'
	printf 'Subject: [PATCH] dm snapshot: overlay\n\nThe overlay as one patch.\n\n'
	printf 'Signed-off-by: dm-snapshot-rs developers <dev@dm-snapshot-rs.invalid>\n---\n'
	for f in $(overlay_files) $(git ls-files drivers); do
		git diff --no-index --src-prefix=a/ --dst-prefix=b/ /dev/null "$f" || true
	done
} > "${TMPDIR:-/tmp}/dm-snap-overlay.patch"
# A MAINTAINERS entry comes with the upstream series.
cp_run --ignore FILE_PATH_CHANGES - < "${TMPDIR:-/tmp}/dm-snap-overlay.patch" || rc=1
exit $rc
