#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# Systematic allocation-failure injection for the dm-snapshot selftests,
# through /proc/thread-self/fail-nth (Documentation/fault-injection/): the
# N-th fault-injection point this thread passes fails, for N = 1, 2, ...
# until an operation passes none. failslab and fail_page_alloc must be set
# up to consider sleeping allocations (faults.sh does).
#
#   fail_nth.py load NAME MAX LEN TARGET PARAMS [STEP]
#       Load the table "0 LEN TARGET PARAMS" into the existing (table-less)
#       device NAME with the N-th allocation failing, then clear it again.
#       With STEP, only N = 1, 1 + STEP, 1 + 2 STEP, ... (a sample, for the
#       slow debug kernel).
#   fail_nth.py write DEV MAX CHUNK_BYTES
#       Write 4 KiB at the start of chunk N of DEV (O_DIRECT) with the
#       N-th allocation failing; every write must succeed.
#
# Prints one line: how many points were failed and what came of it. Exits
# non-zero if MAX is reached before an operation passed no point (the
# points are not all covered) or on an unexpected outcome.

import errno
import mmap
import os
import sys

from dmioctl import DM_TABLE_CLEAR, DM_TABLE_LOAD, control, dm_ioctl, table_spec

FAIL_NTH = "/proc/thread-self/fail-nth"

# Opened once: once armed, opening a file could itself be the point failed.
# Reading and writing it allocate nothing.
fail_nth_fd = os.open(FAIL_NTH, os.O_RDWR)


def arm(n):
    os.pwrite(fail_nth_fd, str(n).encode(), 0)


def disarm():
    """Whether the armed point was reached (and failed); disarms."""
    left = int(os.pread(fail_nth_fd, 32, 0))
    if left:
        arm(0)
    return left == 0


def load(name, limit, length, target, params, step=1):
    spec = table_spec(length, target, params)
    fd = control()
    outcomes = {}
    for n in range(1, limit + 1, step):
        arm(n)
        try:
            dm_ioctl(fd, DM_TABLE_LOAD, name, spec)
            err = 0
        except OSError as e:
            err = e.errno
        hit = disarm()
        if not hit:
            if err:
                print(f"table refused with no failure injected: {os.strerror(err)}")
                return 1
            every = f" (one in {step}, of at most {n - 1})" if step > 1 else ""
            print(f"{sum(outcomes.values())} allocation points failed in turn{every}: " +
                  ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
            dm_ioctl(fd, DM_TABLE_CLEAR, name)
            return 0
        key = "loaded" if not err else errno.errorcode.get(err, str(err))
        outcomes[key] = outcomes.get(key, 0) + 1
        if not err:
            dm_ioctl(fd, DM_TABLE_CLEAR, name)
    print(f"still failing points after {limit}: raise MAX")
    return 1


def write(dev, limit, chunk):
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT wants
    buf.write(b"F" * 4096)
    refused = 0
    for n in range(1, limit + 1):
        arm(n)
        try:
            os.pwrite(fd, buf, n * chunk)
            err = 0
        except OSError as e:
            err = e.errno
        hit = disarm()
        if err == errno.ENOMEM and hit:
            # Refused above the device (the direct-I/O code): the write
            # never reached the target. Write it again, unfailed.
            refused += 1
            os.pwrite(fd, buf, n * chunk)
        elif err:
            print(f"write to chunk {n} failed: {os.strerror(err)}")
            return 1
        if not hit:
            os.fsync(fd)
            print(f"{n - 1} allocation points failed in turn, one per write "
                  f"to a new chunk; {refused} writes refused with ENOMEM "
                  "above the device (written again); no write failed")
            return 0
    print(f"still failing points after {limit}: raise MAX")
    return 1


def main(argv):
    if argv[1] == "load":
        step = int(argv[7]) if len(argv) > 7 else 1
        return load(argv[2], int(argv[3]), int(argv[4]), argv[5], argv[6], step)
    if argv[1] == "write":
        return write(argv[2], int(argv[3]), int(argv[4]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
