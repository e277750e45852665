#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run one group of dm-snapshot selftests in the guest, printing KTAP.
# Usage: DM_SNAP_IMPL=c|rust KDIR=<tree> run.sh GROUP [PHASE]

TOP=$(cd "$(dirname "$0")/../.." && pwd)
export TOP
. "$TOP/tests/dm-snapshot/lib.sh"

group=$1
PHASE=${2:-}
[ -f "$TOP/tests/dm-snapshot/$group.sh" ] || { echo "Bail out! no test group $group"; exit 1; }

ktap_print_header
ktap_print_msg "group $group${PHASE:+ phase $PHASE}, implementation $IMPL ($MOD)"
# Each group file sets its plan and runs its tests through run_test.
. "$TOP/tests/dm-snapshot/$group.sh"
cleanup_devices
unload_impl || ktap_print_msg "could not unload $MOD"
ktap_finished
