#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# Model-checked concurrency for the dm-snapshot selftests: writers and
# readers on an origin and on several snapshots of it, while snapshots are
# taken and removed, every block read checked against a model of what its
# device must hold.
#
#   model.py PREFIX BASE SECONDS SEED COW...
#
# PREFIX-morigin is made over BASE (a snapshot-origin table); up to one
# snapshot a COW device is live at a time, each with a store (N, P or PO)
# and a chunk size (4, 8 or 16 KiB) drawn at random, made as LVM makes one
# (load the table, suspend the origin, resume the snapshot, resume the
# origin) and removed after a last read of all of it.
#
# Every 4 KiB block written holds one 16-byte tag, 256 times: the device
# it was written to (0: the origin) and the write's number. The model:
#
# - Origin: in the first half, writer i owns every third block from the
#   i-th, so that two or three of them write one chunk at once; in the
#   second half, the i-th third, where it writes runs of blocks. Each reads
#   its blocks back; a block holds its owner's last write.
# - Snapshot: a block holds what the origin held when the snapshot was
#   taken, unless the snapshot's own thread wrote it since. An origin
#   write that overlaps the taking (from the origin's suspend to its
#   resume) may be in the snapshot or not: either is allowed until the
#   first read, which fixes it. Each snapshot's thread reads runs of its
#   blocks anywhere (while the origin's writers overwrite them) and writes
#   runs of its own.
#
# A read that is torn (two tags in a block), holds a tag not allowed, or
# fails, is a mismatch. Prints counts as "# " lines; exits 1 on a mismatch
# or an error.

import itertools
import mmap
import os
import random
import struct
import subprocess
import sys
import threading
import time

BLK = 4096
TAG = struct.Struct("<4sIII")  # magic, block, device, write number
MAGIC = b"DMST"
ORIGIN_WRITERS = 3
STORES = ("N", "P", "PO")
CHUNKS = (8, 16, 32)

numbers = itertools.count(1)
lock = threading.Lock()
stop = threading.Event()  # the origin's writers stop
failed = threading.Event()
failures = []
counts = {"origin writes": 0, "snapshot writes": 0, "blocks read and checked": 0,
          "snapshots taken": 0, "snapshots removed": 0, "blocks taken mid-write": 0}


def fail(msg):
    with lock:
        failures.append(msg)
    failed.set()
    stop.set()


def count(what, n=1):
    with lock:
        counts[what] += n


def dmsetup(*args):
    r = subprocess.run(("dmsetup",) + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("dmsetup %s: %s" % (" ".join(args), r.stderr.strip()))


def fill(buf, first, n, dev, num):
    for i in range(n):
        buf[i * BLK:(i + 1) * BLK] = TAG.pack(MAGIC, first + i, dev, num) * (BLK // TAG.size)


def tags(buf, first, n):
    """The (device, number) of each block read, or a string saying what is wrong."""
    out = []
    for i in range(n):
        blk = buf[i * BLK:(i + 1) * BLK]
        head = blk[:TAG.size]
        magic, block, dev, num = TAG.unpack(head)
        if magic != MAGIC or block != first + i:
            return "block %d holds a tag of block %d (%r)" % (first + i, block, head)
        if blk != head * (BLK // TAG.size):
            return "block %d is torn" % (first + i)
        out.append((dev, num))
    return out


class Origin:
    def __init__(self, path, nblocks):
        self.path, self.nblocks = path, nblocks
        # Each block's writes: [device 0 number, start, end (None in flight)].
        self.hist = [[[0, -1.0, -1.0]] for _ in range(nblocks)]

    def writer(self, i, seed):
        rnd = random.Random(seed)
        half = self.nblocks // 2
        part = (self.nblocks - half) // ORIGIN_WRITERS
        lo, hi = half + i * part, half + (i + 1) * part
        buf = mmap.mmap(-1, 8 * BLK)
        fd = os.open(self.path, os.O_RDWR | os.O_DIRECT)
        try:
            while not stop.is_set():
                if rnd.random() < 0.5:
                    # One block of the first half, whose blocks the
                    # writers own in turn: the chunks of 8 and 16 KiB there
                    # are written by two or three of them at once.
                    n = 1
                    first = rnd.randrange(i, half, ORIGIN_WRITERS)
                else:
                    n = rnd.randint(1, 8)
                    first = rnd.randrange(lo, hi - n + 1)
                if rnd.random() < 0.25:
                    os.preadv(fd, [memoryview(buf)[:n * BLK]], first * BLK)
                    got = tags(buf, first, n)
                    want = [(0, self.hist[b][-1][0]) for b in range(first, first + n)]
                    if got != want:
                        fail("origin: %s, expected %s" % (got, want))
                    count("blocks read and checked", n)
                    continue
                num = next(numbers)
                fill(buf, first, n, 0, num)
                entries = [[num, time.monotonic(), None] for _ in range(n)]
                with lock:
                    for k, e in enumerate(entries):
                        self.hist[first + k].append(e)
                os.pwritev(fd, [memoryview(buf)[:n * BLK]], first * BLK)
                end = time.monotonic()
                with lock:
                    for e in entries:
                        e[2] = end
                    for b in range(first, first + n):
                        del self.hist[b][:-8]
                count("origin writes")
        except OSError as e:
            fail("origin writer %d: %s" % (i, e))
        finally:
            os.close(fd)

    def taken(self, w0, w1):
        """What each block may hold in a snapshot taken between w0 and w1."""
        out = []
        mid = 0
        with lock:
            for h in self.hist:
                before = [e for e in h if e[2] is not None and e[2] < w0]
                may = {(0, e[0]) for e in h if e[1] <= w1 and (e[2] is None or e[2] >= w0)}
                if not before and h[0][0] != 0:
                    raise RuntimeError("a block's history is too short to tell")
                if before:
                    may.add((0, before[-1][0]))
                mid += len(may) > 1
                out.append(may)
        count("blocks taken mid-write", mid)
        return out


class Snapshot:
    def __init__(self, name, dev, origin, cow, store, chunk, seed):
        self.name, self.dev, self.origin, self.cow = name, dev, origin, cow
        self.store, self.chunk, self.seed = store, chunk, seed
        self.path = "/dev/mapper/" + name
        self.want = None
        self.thread = threading.Thread(target=self.run)
        self.halt = threading.Event()

    def take(self, prefix, base, sectors):
        # A COW device used before gets a new header, as LVM wipes it.
        fd = os.open(self.cow, os.O_WRONLY | os.O_DIRECT)
        os.pwrite(fd, mmap.mmap(-1, BLK), 0)
        os.close(fd)
        dmsetup("create", self.name, "--notable")
        dmsetup("load", self.name, "--table", "0 %d snapshot %s %s %s %d" %
                (sectors, base, self.cow, self.store, self.chunk))
        w0 = time.monotonic()
        dmsetup("suspend", prefix + "-morigin")
        dmsetup("resume", self.name)
        dmsetup("resume", prefix + "-morigin")
        w1 = time.monotonic()
        self.want = self.origin.taken(w0, w1)
        count("snapshots taken")
        self.thread.start()

    def check(self, fd, buf, first, n):
        os.preadv(fd, [memoryview(buf)[:n * BLK]], first * BLK)
        got = tags(buf, first, n)
        if isinstance(got, str):
            return fail("%s (%s %d): %s" % (self.name, self.store, self.chunk, got))
        for k, t in enumerate(got):
            may = self.want[first + k]
            if t not in may:
                return fail("%s (%s %d): block %d holds %s, expected one of %s" %
                            (self.name, self.store, self.chunk, first + k, t, sorted(may)))
            self.want[first + k] = {t}
        count("blocks read and checked", n)

    def run(self):
        rnd = random.Random(self.seed)
        nblocks = len(self.want)
        buf = mmap.mmap(-1, 16 * BLK)
        fd = os.open(self.path, os.O_RDWR | os.O_DIRECT)
        try:
            while not failed.is_set() and not self.halt.is_set():
                if rnd.random() < 0.7:
                    n = rnd.randint(1, 16)
                    self.check(fd, buf, rnd.randrange(nblocks - n + 1), n)
                    continue
                n = rnd.randint(1, 8)
                first = rnd.randrange(nblocks - n + 1)
                num = next(numbers)
                fill(buf, first, n, self.dev, num)
                os.pwritev(fd, [memoryview(buf)[:n * BLK]], first * BLK)
                for b in range(first, first + n):
                    self.want[b] = {(self.dev, num)}
                count("snapshot writes")
            # The last read, of every block.
            for first in range(0, nblocks, 16):
                if failed.is_set():
                    break
                self.check(fd, buf, first, min(16, nblocks - first))
        except OSError as e:
            fail("%s (%s %d): %s" % (self.name, self.store, self.chunk, e))
        finally:
            os.close(fd)

    def remove(self):
        self.halt.set()
        self.thread.join()
        # A udev probe of the device may still hold it open for a moment:
        # retry as LVM does.
        dmsetup("remove", "--retry", self.name)
        count("snapshots removed")


def main():
    prefix, base, seconds, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cows = sys.argv[5:]
    rnd = random.Random(seed)
    fd = os.open(base, os.O_RDONLY)
    size = os.lseek(fd, 0, os.SEEK_END)
    os.close(fd)
    nblocks, sectors = size // BLK, size // 512
    # The base's blocks tagged as written by write 0.
    buf = mmap.mmap(-1, 256 * BLK)
    fd = os.open(base, os.O_WRONLY | os.O_DIRECT)
    for first in range(0, nblocks, 256):
        n = min(256, nblocks - first)
        fill(buf, first, n, 0, 0)
        os.pwritev(fd, [memoryview(buf)[:n * BLK]], first * BLK)
    os.close(fd)
    dmsetup("create", prefix + "-morigin", "--table", "0 %d snapshot-origin %s" % (sectors, base))
    origin = Origin("/dev/mapper/%s-morigin" % prefix, nblocks)
    writers = [threading.Thread(target=origin.writer, args=(i, seed * 16 + i))
               for i in range(ORIGIN_WRITERS)]
    for t in writers:
        t.start()
    live = {}
    made = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and not stop.is_set():
            time.sleep(rnd.uniform(0.5, 2.0))
            free = [c for c in cows if c not in live]
            if free and (not live or rnd.random() < 0.6):
                cow = rnd.choice(free)
                s = Snapshot("%s-ms%d" % (prefix, made), made + 1, origin, cow,
                             rnd.choice(STORES), rnd.choice(CHUNKS), seed * 16 + 8 + made)
                made += 1
                live[cow] = s
                s.take(prefix, base, sectors)
            elif live:
                live.pop(rnd.choice(sorted(live))).remove()
        # The last reads of the snapshots left, the origin's writers still on.
        while live:
            live.pop(sorted(live)[0]).remove()
    except RuntimeError as e:
        fail(str(e))
    finally:
        stop.set()
        for s in live.values():
            s.halt.set()
            if s.thread.ident is not None:
                s.thread.join()
        for t in writers:
            t.join()
    # Every writer stopped: the whole origin holds each block's last write.
    if not failures:
        buf = mmap.mmap(-1, 256 * BLK)
        fd = os.open(origin.path, os.O_RDONLY | os.O_DIRECT)
        for first in range(0, nblocks, 256):
            n = min(256, nblocks - first)
            os.preadv(fd, [memoryview(buf)[:n * BLK]], first * BLK)
            want = [(0, origin.hist[b][-1][0]) for b in range(first, first + n)]
            if tags(buf, first, n) != want:
                fail("origin at the end: blocks %d-%d differ from the model" % (first, first + n - 1))
                break
            count("blocks read and checked", n)
        os.close(fd)
    print("# seed %d, %d s: %s" % (seed, seconds, ", ".join("%s %d" % kv for kv in counts.items())))
    for f in failures[:10]:
        print("mismatch: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
