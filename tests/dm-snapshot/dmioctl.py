# SPDX-License-Identifier: GPL-2.0
#
# Device-mapper ioctls for the dm-snapshot selftests' Python helpers, for
# what must not go through dmsetup: an ioctl whose allocations are failed
# one by one (fail_nth.py), and table swaps that must not wait for udev
# (replay.py). include/uapi/linux/dm-ioctl.h.

import fcntl
import os
import struct

DM_IOCTL_HDR = struct.Struct("=3I7IQ128s129s7s")  # struct dm_ioctl, 312 bytes
DM_TARGET_SPEC = struct.Struct("=QQiI16s")  # struct dm_target_spec, 40 bytes
DM_DEV_SUSPEND, DM_TABLE_LOAD, DM_TABLE_CLEAR = 6, 9, 10


def dm_cmd(nr):
    return (3 << 30) | (DM_IOCTL_HDR.size << 16) | (0xFD << 8) | nr


def dm_ioctl(fd, nr, name, spec=b""):
    """Issue ioctl NR on device NAME; SPEC is one target's spec, if any.
    DM_DEV_SUSPEND with no flags resumes, swapping in the table loaded."""
    data_start = DM_IOCTL_HDR.size + (-DM_IOCTL_HDR.size % 8)
    buf = bytearray(16384)  # longer than 1024: passed to the kernel as is
    DM_IOCTL_HDR.pack_into(buf, 0, 4, 0, 0, len(buf), data_start,
                           1 if spec else 0, 0, 0, 0, 0, 0,
                           name.encode(), b"", b"")
    buf[data_start:data_start + len(spec)] = spec
    fcntl.ioctl(fd, dm_cmd(nr), buf)


def table_spec(length, target, params):
    p = params.encode() + b"\0"
    p += b"\0" * (-(DM_TARGET_SPEC.size + len(p)) % 8)
    return DM_TARGET_SPEC.pack(0, length, 0, DM_TARGET_SPEC.size + len(p),
                               target.encode()) + p


def control():
    return os.open("/dev/mapper/control", os.O_RDWR)
