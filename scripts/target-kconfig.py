#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# The target's place in a 6.12 tree: its Kconfig entry (DM_SNAPSHOT_RUST),
# its line in drivers/md/Makefile and its MAINTAINERS entry. Used by
# scripts/series.sh (the target's patch) and by scripts/build-kernel.sh (the
# test kernel's tree, which builds the target in tree, as the series does).
# A tree that has them already is left as it is.
#
# Usage: target-kconfig.py TREE

import os
import sys

ENTRY = """config DM_SNAPSHOT_RUST
	tristate "Snapshot target (Rust)"
	depends on BLK_DEV_DM && RUST
	depends on DM_SNAPSHOT != y
	help
	  The snapshot-origin, snapshot and snapshot-merge targets, written
	  in Rust: a drop-in replacement for the C snapshot target
	  (DM_SNAPSHOT), with the same table and status lines, module
	  parameters and on-disk COW format, so LVM2 snapshots work
	  unchanged. Its COW throttle lets origin writes that need no copy
	  pass while copies are throttled, and queues writes to chunks whose
	  copy is in flight.

	  Only one module can provide the targets at a time: it cannot be
	  built in beside DM_SNAPSHOT, and of two modules the one loaded
	  first provides them.

	  See Documentation/admin-guide/device-mapper/snapshot-rs.rst.

	  If unsure, say N.

"""

MAINTAINERS = """DEVICE-MAPPER SNAPSHOT TARGETS (RUST)
M:	dm-snapshot-rs developers <dev@dm-snapshot-rs.invalid>
L:	dm-devel@lists.linux.dev
L:	rust-for-linux@vger.kernel.org
S:	Maintained
F:	Documentation/admin-guide/device-mapper/snapshot-rs.rst
F:	drivers/md/dm_snap/
F:	drivers/md/dm_snap_core/
F:	drivers/md/dm_snapshot_rs.rs

"""


def insert(path, anchor, text, after=False):
    """Put TEXT before (or after) ANCHOR in PATH, unless it is there."""
    s = open(path).read()
    if text in s:
        return
    if anchor not in s:
        sys.exit("%s: no '%s' to put the snapshot target beside" % (path, anchor.strip()))
    new = anchor + text if after else text + anchor
    open(path, "w").write(s.replace(anchor, new, 1))


tree = sys.argv[1]
insert(os.path.join(tree, "drivers/md/Kconfig"), "config DM_THIN_PROVISIONING\n", ENTRY)
insert(os.path.join(tree, "drivers/md/Makefile"), "obj-$(CONFIG_DM_SNAPSHOT)	+= dm-snapshot.o\n",
       "obj-$(CONFIG_DM_SNAPSHOT_RUST)	+= dm_snapshot_rs.o\n", after=True)
insert(os.path.join(tree, "MAINTAINERS"), "DEVICE-MAPPER VDO TARGET\n", MAINTAINERS)
