#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The main job: install what is needed, build the kernel and the module,
# boot the guest and run the snapshot demo in it.

. "$(dirname "$0")/lib.sh"

guest_job run 300 "DM_SNAP_IMPL=${DM_SNAP_IMPL:-rust} bash scripts/demo-guest.sh"
