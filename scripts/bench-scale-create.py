#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Activate a device-mapper device and print how long it took, in seconds.

Usage: bench-scale-create.py NAME SECTORS TARGET PARAMS

Creates NAME, loads the table "0 SECTORS TARGET PARAMS" and resumes it,
through the device-mapper ioctls (tests/dm-snapshot/dmioctl.py), and times
those three alone: no process is started and no file of the host's root
read while the clock runs, so under -icount the figure does not depend on
how fast the host answers the guest's 9p reads.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "dm-snapshot"))
import dmioctl  # noqa: E402


def main():
    name, sectors, target, params = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dm = dmioctl.Dm()
    t0 = time.monotonic()
    dm.create(name)
    dm.load(name, sectors, target, params)
    dm.resume(name)
    t1 = time.monotonic()
    dm.close()
    print("%.3f" % (t1 - t0))


if __name__ == "__main__":
    main()
