#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the out-of-tree module against the test kernel tree.
# Usage: build-module.sh [KDIR] [extra make args...]

. "$(dirname "$0")/lib.sh"

KDIR=${1:-$("$TOP/scripts/build-kernel.sh")}
shift || true
log "building module against $KDIR"
make_kernel M="$TOP" modules "$@"
