#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# Crash consistency of the persistent store at every point of a dm-log-writes
# log, for the crash group of the dm-snapshot selftests.
#
#   replay.py fill ORIGIN
#       Tags every block of ORIGIN as written by write 0, before the
#       snapshot is taken.
#
#   replay.py write LOGDEV ORIGIN SNAP OPS SEED STATE
#       The workload: OPS writes of 4 KiB blocks to the origin and the
#       snapshot (P, 4 KiB chunks) at random, each block tagged with the
#       device and the write's number. Every 8 writes, both devices are
#       flushed (fdatasync) and the log gets a mark "f<k>": the snapshot
#       writes before it are on disk. The origin and COW device sit on one
#       disk behind dm-log-writes LOGDEV, so the log orders the writes to
#       both as the disk completed them. STATE records the writes.
#
#   replay.py check LOG STATE REPLAYDEV ORIGIN_SECTORS COW_SECTORS POINTS LABEL
#       Replays the log onto REPLAYDEV (a loop device over a file as large as
#       the disk) up to each chosen point, loads a snapshot table on the
#       replayed origin and COW device (linear devices over REPLAYDEV) and
#       reads all of it. POINTS: "all" (every entry after the snapshot was
#       made) or how many to spread over them, two thirds at flush, FUA and
#       mark entries, the end among them. Each block must hold what the origin held when the
#       snapshot was taken or one of the snapshot's own writes: the last one
#       on disk at the point's mark, or one made after it (which the disk may
#       or may not have had). Prints counts; exits 1 on a wrong block, a
#       refused load or a failed read.
#
# The log format is dm-log-writes' (drivers/md/dm-log-writes.c): a super
# block (magic, version, entry count, sector size) in the first sector,
# then one sector per entry (sector, sector count, flags, data length, and
# a mark's text) followed by the entry's data.

import json
import mmap
import os
import random
import struct
import subprocess
import sys
import time

from dmioctl import DM_DEV_SUSPEND, DM_TABLE_LOAD, control, dm_ioctl, table_spec

BLK = 4096
TAG = struct.Struct("<4sIII")  # magic, block, device (0 origin, 1 snapshot), write number
MAGIC = b"DMST"
SUPER = struct.Struct("<QQQI")
ENTRY = struct.Struct("<QQQQ")
LOG_MAGIC, LOG_VERSION = 0x6A736677736872, 1
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8


def dmsetup(*args):
    r = subprocess.run(("dmsetup",) + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("dmsetup %s: %s" % (" ".join(args), r.stderr.strip()))


def block_of(first, dev, num):
    return TAG.pack(MAGIC, first, dev, num) * (BLK // TAG.size)


def fill(origin):
    fd = os.open(origin, os.O_WRONLY | os.O_DIRECT)
    nblocks = os.lseek(fd, 0, os.SEEK_END) // BLK
    buf = mmap.mmap(-1, 256 * BLK)
    for first in range(0, nblocks, 256):
        n = min(256, nblocks - first)
        for i in range(n):
            buf[i * BLK:(i + 1) * BLK] = block_of(first + i, 0, 0)
        os.pwritev(fd, [memoryview(buf)[:n * BLK]], first * BLK)
    os.fsync(fd)
    os.close(fd)


def write(logdev, origin, snap, ops, seed, state):
    rnd = random.Random(seed)
    buf = mmap.mmap(-1, BLK)
    fds = [os.open(p, os.O_RDWR | os.O_DIRECT) for p in (origin, snap)]
    nblocks = os.lseek(fds[0], 0, os.SEEK_END) // BLK
    writes = []  # snapshot writes: [block, number, marks before it]
    marks = 0
    for n in range(1, ops + 1):
        dev = 1 if rnd.random() < 0.4 else 0
        b = rnd.randrange(nblocks)
        buf[:] = block_of(b, dev, n)
        os.pwrite(fds[dev], buf, b * BLK)
        if dev:
            writes.append([b, n, marks])
        if n % 8 == 0:
            for fd in fds:
                os.fdatasync(fd)
            dmsetup("message", logdev, "0", "mark", "f%d" % (marks + 1))
            marks += 1
    for fd in fds:
        os.close(fd)
    with open(state, "w") as f:
        json.dump({"nblocks": nblocks, "writes": writes}, f)
    print("# %d writes, %d to the snapshot, %d marks" % (ops, len(writes), marks))


def entries(log):
    """(flags, sector, data offset in the log, data length, mark text) of each entry."""
    with open(log, "rb") as f:
        data = f.read()
    magic, version, nr, secsize = SUPER.unpack_from(data, 0)
    if magic != LOG_MAGIC or version != LOG_VERSION:
        raise RuntimeError("%s holds no dm-log-writes log" % log)
    out = []
    pos = secsize
    for _ in range(nr):
        sector, nsec, flags, dlen = ENTRY.unpack_from(data, pos)
        text = b""
        if flags & MARK:
            text = data[pos + ENTRY.size:pos + ENTRY.size + dlen].rstrip(b"\0")
        pos += secsize
        n = 0 if flags & (DISCARD | MARK) else nsec * secsize
        out.append((flags, sector * secsize, pos, n, text.decode(errors="replace")))
        pos += n
    return data, out


def spread(items, n):
    """n of items, evenly spaced, the last one among them."""
    if n >= len(items):
        return items
    return [items[len(items) - 1 - k * len(items) // n] for k in range(n)]


def check(log, state, replaydev, origin_sectors, cow_sectors, points, label):
    t0 = time.monotonic()
    with open(state) as f:
        st = json.load(f)
    nblocks, writes = st["nblocks"], st["writes"]
    by_block = {}
    for b, num, marks in writes:
        by_block.setdefault(b, []).append((num, marks))
    data, ents = entries(log)
    try:
        start = next(i for i, e in enumerate(ents) if e[0] & MARK and e[4] == "snap")
    except StopIteration:
        raise RuntimeError("the log has no mark 'snap'")
    after = list(range(start + 1, len(ents)))
    if points == "all":
        chosen = set(after)
    else:
        # Two thirds at flushes, FUA writes and marks, a third between.
        want = int(points)
        marked = [i for i in after if ents[i][0] & (FLUSH | FUA | MARK)]
        between = [i for i in after if not ents[i][0] & (FLUSH | FUA | MARK)]
        chosen = set(spread(marked, want - want // 3)) | set(spread(between, want // 3))
    dmsetup("create", "dmst-rorigin", "--table", "0 %d linear %s 0" % (origin_sectors, replaydev))
    dmsetup("create", "dmst-rcow", "--table", "0 %d linear %s %d" % (cow_sectors, replaydev, origin_sectors))
    # The snapshot is swapped in and out of one device by ioctls, which wait
    # for no udev rules: a table load and a resume a point, and an error
    # table after it, so that the next load finds no live snapshot on the
    # COW device (which it would take the exceptions of).
    name = "dmst-rsnap"
    dmsetup("create", name, "--table", "0 %d error" % origin_sectors)
    ctl = control()
    snap_spec = table_spec(origin_sectors, "snapshot",
                           "/dev/mapper/dmst-rorigin /dev/mapper/dmst-rcow P 8")
    error_spec = table_spec(origin_sectors, "error", "")
    # The disk as the log has it so far, written to REPLAYDEV at each point.
    img = mmap.mmap(-1, (origin_sectors + cow_sectors) * 512)
    fd = os.open(replaydev, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, nblocks * BLK)
    counts = {"points": 0, "flush points": 0, "blocks checked": 0, "taken from the snapshot's writes": 0}
    wrong = []
    mark = 0
    for i, (flags, off, dpos, n, text) in enumerate(ents):
        if n:
            img[off:off + n] = data[dpos:dpos + n]
        if flags & MARK and text.startswith("f"):
            mark = int(text[1:])
        if i not in chosen:
            continue
        counts["points"] += 1
        counts["flush points"] += bool(flags & (FLUSH | FUA))
        os.pwrite(fd, img, 0)
        try:
            dm_ioctl(ctl, DM_TABLE_LOAD, name, snap_spec)
        except OSError as e:
            wrong.append("point %d (mark f%d): load refused: %s (the kernel log says why)" %
                         (i, mark, os.strerror(e.errno)))
            break
        try:
            dm_ioctl(ctl, DM_DEV_SUSPEND, name)
            sfd = os.open("/dev/mapper/" + name, os.O_RDONLY | os.O_DIRECT)
            try:
                os.preadv(sfd, [buf], 0)
            finally:
                os.close(sfd)
        except OSError as e:
            wrong.append("point %d (mark f%d): read failed: %s" % (i, mark, e))
            break
        finally:
            dm_ioctl(ctl, DM_TABLE_LOAD, name, error_spec)
            dm_ioctl(ctl, DM_DEV_SUSPEND, name)
        for b in range(nblocks):
            got = bytes(buf[b * BLK:(b + 1) * BLK])
            head = got[:TAG.size]
            magic, blk, dev, num = TAG.unpack(head)
            ok = magic == MAGIC and blk == b and got == head * (BLK // TAG.size)
            if ok:
                ws = by_block.get(b, [])
                durable = [w for w, m in ws if m < mark]
                may = {w for w, m in ws if m >= mark}
                if durable:
                    may.add(durable[-1])
                    ok = dev == 1 and num in may
                else:
                    ok = (dev, num) == (0, 0) or (dev == 1 and num in may)
                counts["taken from the snapshot's writes"] += ok and dev == 1
            if not ok:
                wrong.append("point %d of %d (mark f%d): block %d holds %r" %
                             (i, len(ents), mark, b, head))
                break
            counts["blocks checked"] += 1
        if wrong:
            break
    os.close(fd)
    os.close(ctl)
    for n in (name, "dmst-rcow", "dmst-rorigin"):
        dmsetup("remove", "--retry", n)
    print("# %s: log of %d entries, %s, %.0f s" % (label, len(ents), ", ".join(
        "%s %d" % kv for kv in counts.items()), time.monotonic() - t0))
    for w in wrong:
        print("inconsistent: " + w)
    return 1 if wrong else 0


def main():
    if sys.argv[1] == "fill":
        fill(sys.argv[2])
        return 0
    if sys.argv[1] == "write":
        logdev, origin, snap, ops, seed, state = sys.argv[2:8]
        write(logdev, origin, snap, int(ops), int(seed), state)
        return 0
    if sys.argv[1] == "check":
        log, state, replaydev, osec, csec, points, label = sys.argv[2:9]
        return check(log, state, replaydev, int(osec), int(csec), points, label)
    raise SystemExit("usage: replay.py write|check ...")


if __name__ == "__main__":
    sys.exit(main())
