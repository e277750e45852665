#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Write a valid persistent-store COW image holding N exceptions.

Usage: bench-scale-image.py FILE N LAYOUT SEED

The image is what drivers/md/dm-snap-persistent.c would have written for
a snapshot of 4 KiB chunks (8 sectors, 256 exceptions an area) after N
first writes: the header, then the metadata areas in order, each followed
by its 256 data chunks, new chunks given out in order. LAYOUT says which
origin chunks were written: "seq" the chunks 0 to N-1 in order (runs of
consecutive chunks), "random" N chunks of an origin of 4N in a random order
(no runs). FILE is made sparse: the data chunks are never written, so a
COW of a million exceptions (4 GiB) takes 16 MiB of a tmpfs. It holds one
more area after the last, zeroed, where the metadata ends.

Prints the origin size the image needs, in sectors.
"""

import os
import random
import struct
import sys
from array import array

CHUNK_SECTORS = 8
CHUNK = CHUNK_SECTORS * 512
PER_AREA = CHUNK // 16
MAGIC = 0x70416E53  # "SnAp"


def main():
    path, n, layout, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if layout == "seq":
        olds = range(n)
        origin_chunks = n
    elif layout == "random":
        origin_chunks = 4 * n
        olds = random.Random(seed).sample(range(origin_chunks), n)
    else:
        sys.exit("layout must be seq or random")
    areas = (n + PER_AREA - 1) // PER_AREA
    with open(path, "wb") as f:
        # Header chunk, the areas with their data chunks, one area more.
        f.truncate((1 + (areas + 1) * (PER_AREA + 1)) * CHUNK)
        f.write(struct.pack("<IIII", MAGIC, 1, 1, CHUNK_SECTORS))
        for a in range(areas):
            first = a * PER_AREA
            last = min(first + PER_AREA, n)
            area_chunk = 1 + a * (PER_AREA + 1)
            words = array("Q")
            for i in range(first, last):
                words.append(olds[i])
                words.append(area_chunk + 1 + (i - first))
            if sys.byteorder != "little":
                words.byteswap()
            f.seek(area_chunk * CHUNK)
            f.write(words.tobytes())
    print(origin_chunks * CHUNK_SECTORS)


if __name__ == "__main__":
    main()
