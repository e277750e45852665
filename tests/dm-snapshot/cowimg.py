#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Write a persistent-store COW device by hand, well formed or not.

Usage: cowimg.py DEV MAGIC VALID VERSION CHUNK [AREA:OLD:NEW ...]

Writes the header (chunk 0) and, for each AREA:OLD:NEW, the exception
{OLD, NEW} into metadata area AREA, in the order given, as
drivers/md/dm-snap-persistent.c lays them out for a chunk of CHUNK sectors
(area i at chunk 1 + i * (exceptions per area + 1)). The rest of the device
is left as it is: a zeroed device ends the metadata after the last
exception written.
"""

import os
import struct
import sys

SECTOR = 512


def main():
    dev = sys.argv[1]
    magic, valid, version, chunk = (int(a, 0) for a in sys.argv[2:6])
    areas = {}
    for spec in sys.argv[6:]:
        area, old, new = (int(x, 0) for x in spec.split(":"))
        areas.setdefault(area, []).append((old, new))
    fd = os.open(dev, os.O_WRONLY)
    try:
        os.pwrite(fd, struct.pack("<IIII", magic, valid, version, chunk).ljust(SECTOR, b"\0"), 0)
        per_area = chunk * SECTOR // 16
        for area, exceptions in areas.items():
            where = (1 + area * (per_area + 1)) * chunk * SECTOR
            data = b"".join(struct.pack("<QQ", old, new) for old, new in exceptions)
            os.pwrite(fd, data, where)
        os.fsync(fd)
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
