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


# The rest: enough of libdevmapper for diff.py, which runs thousands of
# commands and must not spend a process and a udev round trip on each.
DM_DEV_CREATE, DM_DEV_REMOVE, DM_TABLE_STATUS, DM_TARGET_MSG = 3, 4, 12, 14
DM_SUSPEND_FLAG, DM_STATUS_TABLE_FLAG, DM_DATA_OUT_FLAG = 1 << 1, 1 << 4, 1 << 16
# The udev cookie's flags (libdm-common.h): udev's device-mapper rules,
# the disk rules (blkid) among them, skip our devices, so no probe holds
# one open when it is removed.
DM_UDEV_FLAGS = 0x000F << 16
DM_TARGET_MSG_HDR = struct.Struct("=Q")


class Dm:
    """Device-mapper commands on one /dev/mapper/control descriptor. Each
    raises OSError with the kernel's errno when the kernel refuses it."""

    def __init__(self):
        self.fd = control()

    def close(self):
        os.close(self.fd)

    def _ioctl(self, nr, name, flags=0, data=b"", targets=0):
        data_start = DM_IOCTL_HDR.size + (-DM_IOCTL_HDR.size % 8)
        buf = bytearray(16384)
        DM_IOCTL_HDR.pack_into(buf, 0, 4, 0, 0, len(buf), data_start, targets,
                               0, flags, DM_UDEV_FLAGS, 0, 0, name.encode(), b"", b"")
        buf[data_start:data_start + len(data)] = data
        fcntl.ioctl(self.fd, dm_cmd(nr), buf)
        return buf, DM_IOCTL_HDR.unpack_from(buf, 0)

    def create(self, name):
        """A device with no table; its dev_t."""
        _, hdr = self._ioctl(DM_DEV_CREATE, name)
        return hdr[10]

    def load(self, name, length, target, params):
        self._ioctl(DM_TABLE_LOAD, name, data=table_spec(length, target, params), targets=1)

    def suspend(self, name):
        self._ioctl(DM_DEV_SUSPEND, name, flags=DM_SUSPEND_FLAG)

    def resume(self, name):
        self._ioctl(DM_DEV_SUSPEND, name)

    def remove(self, name):
        self._ioctl(DM_DEV_REMOVE, name)

    def status(self, name, table=False):
        """The live table's one target, as (type, its status or table line)."""
        buf, hdr = self._ioctl(DM_TABLE_STATUS, name, flags=DM_STATUS_TABLE_FLAG if table else 0)
        if hdr[5] == 0:
            return None
        start = hdr[4]
        spec = DM_TARGET_SPEC.unpack_from(buf, start)
        text = bytes(buf[start + DM_TARGET_SPEC.size:]).split(b"\0", 1)[0].decode()
        return spec[4].rstrip(b"\0").decode(), text

    def message(self, name, msg):
        """The target's answer, if it gave one."""
        buf, hdr = self._ioctl(DM_TARGET_MSG, name, data=DM_TARGET_MSG_HDR.pack(0) + msg.encode() + b"\0")
        if not hdr[7] & DM_DATA_OUT_FLAG:
            return ""
        return bytes(buf[hdr[4]:]).split(b"\0", 1)[0].decode()
