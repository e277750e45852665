#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# Differential testing of two dm-snapshot implementations, for the diff
# group of the dm-snapshot selftests: seeded random sequences of commands
# and I/O, run on each module in turn in one guest, every answer compared.
#
#   diff.py run KO_A KO_B SEQUENCES OPS SEED BASE COW...
#       SEQUENCES sequences of about OPS operations each, from seeds SEED,
#       SEED+1, ..., run on module A (all of them), then on module B, with
#       BASE (a loop device) as the origin's disk and the COWs as room for
#       up to one snapshot each. Prints counts as "# " lines; for each
#       sequence whose answers differ, its seed, the first difference and
#       the shortest sequence found that still shows one (as a JSON line,
#       for "diff.py replay"). Exits 1 on a difference.
#
#   diff.py gen SEED OPS ORIGIN_SECTORS SLOTS
#       Prints the sequence "run" makes from SEED, for "replay".
#
#   diff.py replay KO_A KO_B FILE BASE COW...
#       Runs the sequence in FILE (one JSON line) on both and prints both
#       transcripts side by side.
#
# An operation is a list: its kind, then its arguments. Sequences are made
# without looking at any answer, so the same seed makes the same sequence
# for both modules: a snapshot made, then removed; its COW grown, with a
# table reload that hands its exceptions over; origin and snapshot reads
# and writes of any size at any sector; discards (the snapshot's discard
# features); suspend and resume; a COW too small for the writes (Invalid,
# or Overflow with the PO store); module parameters set and read back;
# tables the target must refuse; COW devices written by hand, corrupt or
# hostile, a P snapshot loaded on each. Each answer is a line of the
# transcript: the hash of what a read returned, the errno of a refused
# command or I/O, the kernel's reason for a refused table, status and
# table lines (device numbers as names), and each snapshot's whole content
# at the end.
#
# The modules' own log lines differ in prefix ("device-mapper: snapshots:"
# or "device-mapper: persistent snapshot:" for C, the module's name for
# ours): only the text after it is compared.
#
# The origin and the COW devices are made once and kept across sequences
# (a device made and removed costs more than most operations); each
# sequence starts with the origin's disk as the first one did.

import errno
import fcntl
import functools
import json
import mmap
import os
import random
import re
import stat
import struct
import subprocess
import sys
import time
import zlib

from dmioctl import Dm

SECTOR = 512
PREFIX = "dmst-d"
STORES = ("N", "P", "PO")
CHUNKS = (8, 16, 32, 128)
COW_KIB = (128, 512, 1024, 4096)
# The module parameters, the values a sequence sets, and their defaults,
# which each sequence starts from. The copy throttle's small values are
# left out: kcopyd sleeps for most of each copy, and a quarter of the
# origin written takes minutes.
PARAMS = {
    "snapshot_cow_threshold": ((0, 1, 2, 100, 2048), 2048),
    "snapshot_copy_throttle": ((50, 100), 100),
}
BAD_TABLES = (
    "{o} {c} P 3",  # chunk size not a power of 2
    "{o} {c} P 0",  # on a new COW device, accepted with the default chunk size
    "{o} {c} X 8",  # no such store
    "{o} {c} P",  # too few arguments
    "{o} {o} P 8",  # COW device is the origin
    "{o} {c} P 8 1 bogus_feature",
    "{o} {c} P 8 1 discard_passdown_origin",  # needs discard_zeroes_cow
    "{o} {c} P 8 3 discard_zeroes_cow",  # more features counted than given
    "{o} /dev/nonexistent P 8",
)
# COW devices as a crash, a bug or an attacker may leave them, each a P
# store's header (magic, valid, version, chunk size) and the exceptions
# (old chunk, new chunk) of its first metadata area, on a COW device of
# HOSTILE_SECTORS (with chunks of 8 sectors, area 1 is at chunk 258); the
# rest of the device holds a pattern. A table with chunks of 8 sectors is
# loaded on it. The C store checks the header only (see EXPECTED).
SNAP_MAGIC = 0x70416E53
HOSTILE_SECTORS = 4096
HOSTILE = {
    "well formed": ((SNAP_MAGIC, 1, 1, 8), ((5, 2), (6, 3))),
    "chunk size 16, not the table's": ((SNAP_MAGIC, 1, 1, 16), ((5, 2),)),
    "invalidated": ((SNAP_MAGIC, 0, 1, 8), ((5, 2),)),
    "bad magic": ((0x12345678, 1, 1, 8), ()),
    "version 2": ((SNAP_MAGIC, 1, 2, 8), ()),
    "chunk size 0": ((SNAP_MAGIC, 1, 1, 0), ()),
    "chunk size not a power of 2": ((SNAP_MAGIC, 1, 1, 24), ()),
    "chunk size beyond the device": ((SNAP_MAGIC, 1, 1, 65536), ()),
    "new chunk past the device end": ((SNAP_MAGIC, 1, 1, 8), ((5, 2), (6, 100000))),
    "new chunk on its metadata area": ((SNAP_MAGIC, 1, 1, 8), ((5, 2), (6, 1))),
    "new chunk on a later metadata area": ((SNAP_MAGIC, 1, 1, 8), ((5, 258),)),
    "old chunk repeated": ((SNAP_MAGIC, 1, 1, 8), ((5, 2), (5, 3))),
    "old chunk past the origin": ((SNAP_MAGIC, 1, 1, 8), ((100000, 2),)),
    "huge old and new chunk": ((SNAP_MAGIC, 1, 1, 8), ((2**64 - 1, 2**64 - 2),)),
}
# The kernel has KASAN (make check-debug), which would report C's reading
# of freed memory on one of BAD_TABLES (see C_ONLY).
KASAN = os.environ.get("DM_SNAP_KASAN") == "1"
LOG_PREFIX = re.compile(r"^(device-mapper: (snapshots|persistent snapshot|snapshot exception stores): |dm_snapshot_rs: )")


# ---- the sequences ------------------------------------------------------------


def generate(seed, ops, origin_sectors, slots):
    """A sequence of about OPS operations, from SEED alone."""
    rnd = random.Random(seed)
    live = {}  # slot: chunk size, COW KiB
    seq = []

    def extent(limit):
        n = rnd.choice((1, 1, 8, 8, rnd.randint(1, 64), rnd.randint(1, 512)))
        n = min(n, limit)
        return rnd.randrange(0, limit - n + 1), n

    def target():
        if live and rnd.random() < 0.5:
            return "s%d" % rnd.choice(sorted(live))
        return "origin"

    while len(seq) < ops:
        r = rnd.random()
        free = [s for s in range(slots) if s not in live]
        # Most of a sequence has a snapshot to work on.
        if not live and rnd.random() < 0.7:
            r = 0
        if r < 0.12 and free:
            s = rnd.choice(free)
            store = rnd.choice(STORES)
            chunk = rnd.choice(CHUNKS)
            cow = rnd.choice(COW_KIB)
            feats = []
            if rnd.random() < 0.2:
                feats = ["discard_zeroes_cow"] + (["discard_passdown_origin"] if rnd.random() < 0.5 else [])
            live[s] = (chunk, cow)
            seq.append(["create", s, store, chunk, cow, feats])
        elif r < 0.16 and live:
            s = rnd.choice(sorted(live))
            del live[s]
            seq.append(["remove", s])
        elif r < 0.19 and live:
            s = rnd.choice(sorted(live))
            chunk, cow = live[s]
            bigger = [k for k in COW_KIB if k > cow]
            if bigger:
                live[s] = (chunk, rnd.choice(bigger))
                seq.append(["grow", s, live[s][1]])
        elif r < 0.50:
            off, n = extent(origin_sectors)
            seq.append(["write", target(), off, n, rnd.randrange(1 << 30)])
        elif r < 0.78:
            off, n = extent(origin_sectors)
            seq.append(["read", target(), off, n])
        elif r < 0.84:
            off, n = extent(origin_sectors)
            seq.append(["discard", target(), off, n])
        elif r < 0.88:
            seq.append(["fill", rnd.randrange(1 << 30)])
        elif r < 0.91:
            seq.append(["suspend-resume", target()])
        elif r < 0.93:
            param = rnd.choice(sorted(PARAMS))
            seq.append(["param", param, rnd.choice(PARAMS[param][0])])
        elif r < 0.94 and live:
            seq.append(["message", "s%d" % rnd.choice(sorted(live)), rnd.choice(("stats", "bogus"))])
        elif r < 0.955 and free:
            seq.append(["bad-table", rnd.choice(free), rnd.randrange(len(BAD_TABLES))])
        elif r < 0.97 and free:
            seq.append(["hostile", rnd.choice(free), rnd.choice(sorted(HOSTILE))])
        else:
            seq.append(["status"])
    return seq


# ---- running one ----------------------------------------------------------------


def pattern(seed, first, n):
    """N sectors of data from SEED, each one's different: 16 bytes of seed
    and sector number, 32 times. Cheap, where random bytes are slow under
    TCG."""
    return b"".join(struct.pack("<QQ", seed, first + k) * 32 for k in range(n))


def digest(data):
    return "%08x" % zlib.crc32(data)


@functools.cache
def disk_sectors(path):
    return int(subprocess.check_output(("blockdev", "--getsz", path)))


def merged(extents):
    """EXTENTS (sector, count) sorted, overlapping and adjacent ones joined."""
    out = []
    for off, n in sorted(extents):
        if out and off <= out[-1][0] + out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], off + n - out[-1][0]))
        else:
            out.append((off, n))
    return out


def dev_name(rdev):
    return "%d:%d" % (os.major(rdev), os.minor(rdev))


class Run:
    """One sequence on the module loaded now; its transcript in .out."""

    def __init__(self, dm, mod, base, cows, node_dir):
        self.dm, self.mod, self.base, self.cows = dm, mod, base, cows
        self.node_dir = node_dir
        self.sectors = disk_sectors(base)
        self.names = {dev_name(os.stat(base).st_rdev): "BASE"}
        for i, c in enumerate(cows):
            self.names[dev_name(os.stat(c).st_rdev)] = "COWDISK%d" % i
        self.nodes = {}  # device-mapper name: its node
        self.snaps = {}  # slot: (table params)
        self.out = []
        self.kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.kmsg, 0, os.SEEK_END)
        self.buf = mmap.mmap(-1, 512 * SECTOR)

    # -- helpers --
    def log(self):
        """The kernel's log lines of the snapshot targets since the last call."""
        lines = []
        while True:
            try:
                rec = os.read(self.kmsg, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten records
                    continue
                raise
            text = rec.split(";", 1)[-1].split("\n", 1)[0]
            if "snapshot" not in text and "device-mapper" not in text:
                continue
            text = LOG_PREFIX.sub("", text)
            lines.append(re.sub(r"\b\d+:\d+\b", lambda m: self.names.get(m.group(0), "?"), text))
        return lines

    def node(self, name, rdev):
        path = os.path.join(self.node_dir, name)
        if os.path.exists(path):
            os.unlink(path)
        os.mknod(path, 0o600 | stat.S_IFBLK, rdev)
        self.nodes[name] = path
        self.names[dev_name(rdev)] = name[len(PREFIX) + 1:].upper()
        return path

    def make(self, name, length, target, params):
        rdev = self.dm.create(name)
        # Named from now on, in the log of a refused table too; a number an
        # earlier device had is that device's no more.
        self.names[dev_name(rdev)] = name[len(PREFIX) + 1:].upper()
        try:
            self.dm.load(name, length, target, params)
        except OSError:
            self.remove(name)
            raise
        return self.node(name, rdev)

    def forget(self, name):
        """NAME leaves the sequence's devices, but stays (a COW device)."""
        path = self.nodes.pop(name, None)
        if path:
            os.unlink(path)

    def cow_device(self, s, sectors):
        """Slot S's COW device, SECTORS long, over its disk: made once, and
        its table loaded again when its size changes (a device made and
        removed costs more than a reload). A new header, as LVM wipes a COW
        device before use."""
        name = "%s-c%d" % (PREFIX, s)
        have = COWS.get(s)
        if have is None:
            path = self.make(name, sectors, "linear", "%s 0" % self.cows[s])
            self.dm.resume(name)
            COWS[s] = [os.stat(path).st_rdev, sectors]
        else:
            path = self.node(name, have[0])
            if have[1] != sectors:
                have[1] = None
                self.dm.load(name, sectors, "linear", "%s 0" % self.cows[s])
                self.dm.resume(name)
                have[1] = sectors
        self.wipe(path)
        return path

    def wipe(self, path):
        fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
        os.pwrite(fd, mmap.mmap(-1, 4096), 0)
        os.close(fd)

    def remove(self, name):
        for i in range(50):
            try:
                self.dm.remove(name)
                break
            except OSError as e:
                if e.errno != errno.EBUSY or i == 49:
                    raise
                TIMES["(busy retries)"] = TIMES.get("(busy retries)", 0) + 1
                time.sleep(0.1)
        path = self.nodes.pop(name, None)
        if path:
            os.unlink(path)

    def say(self, what, answer):
        self.out.append("%s -> %s" % (what, answer))

    def status_lines(self):
        lines = []
        for name in sorted(self.nodes):
            for table in (False, True):
                try:
                    st = self.dm.status(name, table)
                except OSError as e:
                    st = errno.errorcode[e.errno]
                text = st[1] if isinstance(st, tuple) else str(st)
                text = re.sub(r"\b\d+:\d+\b", lambda m: self.names.get(m.group(0), "?"), text)
                lines.append("%s %s: %s" % (name, "table" if table else "status", text))
        return lines

    def io(self, kind, dev, off, n, seed=0):
        path = self.nodes.get(PREFIX + "-" + dev)
        if path is None:
            return "no device"
        mv = memoryview(self.buf)[:n * SECTOR]
        if kind != "read":
            # A write to the origin reaches its disk, and so may a discard
            # of a snapshot (discard_passdown_origin).
            DIRTY.append((off, n))
        try:
            fd = os.open(path, (os.O_RDWR if kind != "read" else os.O_RDONLY) | os.O_DIRECT)
        except OSError as e:
            return "open: " + errno.errorcode[e.errno]
        try:
            if kind == "read":
                os.preadv(fd, [mv], off * SECTOR)
                return digest(mv)
            if kind == "write":
                mv[:] = pattern(seed, off, n)
                os.pwritev(fd, [mv], off * SECTOR)
                return "ok"
            # BLKDISCARD: _IO(0x12, 119), a range of two u64.
            fcntl.ioctl(fd, 0x1277, struct.pack("=QQ", off * SECTOR, n * SECTOR))
            return "ok"
        except OSError as e:
            return errno.errorcode[e.errno]
        finally:
            os.close(fd)

    # -- the operations --
    def setup(self, seed):
        """The origin's disk as every sequence starts, and the origin: made
        once a module load (a device made and removed costs much more than
        the sequence's I/O), kept across sequences."""
        if self.sectors not in BASE_DATA:
            BASE_DATA[self.sectors] = pattern(0, 0, self.sectors)
            DIRTY[:] = [(0, self.sectors)]
        # Only what the last sequence wrote or discarded is written again.
        data = BASE_DATA[self.sectors]
        fd = os.open(self.base, os.O_WRONLY | os.O_DIRECT)
        for off, n in merged(DIRTY):
            mv = memoryview(self.buf)[:n * SECTOR] if n <= 512 else memoryview(mmap.mmap(-1, n * SECTOR))
            mv[:] = data[off * SECTOR:(off + n) * SECTOR]
            os.pwritev(fd, [mv], off * SECTOR)
        os.close(fd)
        DIRTY.clear()
        self.defaults()
        name = PREFIX + "-origin"
        if "rdev" in ORIGIN:
            self.node(name, ORIGIN["rdev"])
        else:
            self.make(name, self.sectors, "snapshot-origin", self.base)
            self.dm.resume(name)
            ORIGIN["rdev"] = os.stat(self.nodes[name]).st_rdev
        self.log()

    def teardown(self):
        """Every snapshot; the origin and the COW devices stay for the next
        sequence."""
        for name in sorted(self.nodes):
            if name.startswith(PREFIX + "-s"):
                self.remove(name)
            else:
                self.forget(name)
        os.close(self.kmsg)

    def op(self, i, o):
        kind, args = o[0], o[1:]
        what = "%d %s" % (i, json.dumps(o))
        answer = getattr(self, "op_" + kind.replace("-", "_"))(*args)
        self.say(what, answer)
        for line in self.log():
            self.out.append("    log: " + line)
        # Every snapshot's status after every operation: an invalidation
        # or an allocation counted differently shows where it happened.
        snaps = []
        for name in sorted(n for n in self.nodes if n.startswith(PREFIX + "-s")):
            try:
                snaps.append("%s %s" % (name[len(PREFIX) + 1:], self.dm.status(name)[1]))
            except (OSError, TypeError) as e:
                snaps.append("%s %r" % (name[len(PREFIX) + 1:], e))
        if snaps:
            self.out.append("    status: " + "; ".join(snaps))

    def dm_cmd(self, fn, *args):
        try:
            fn(*args)
            return None
        except OSError as e:
            return errno.errorcode[e.errno]

    def op_create(self, s, store, chunk, cow_kib, feats):
        snap, cow = "%s-s%d" % (PREFIX, s), "%s-c%d" % (PREFIX, s)
        if snap in self.nodes:
            return "slot in use"
        cdev = self.cow_device(s, cow_kib * 2)
        params = "%s %s %s %d" % (self.base, cdev, store, chunk)
        if feats:
            params += " %d %s" % (len(feats), " ".join(feats))
        try:
            self.make(snap, self.sectors, "snapshot", params)
        except OSError as e:
            self.forget(cow)
            return "refused: " + errno.errorcode[e.errno]
        self.snaps[s] = params
        origin = PREFIX + "-origin"
        err = self.dm_cmd(self.dm.suspend, origin) or self.dm_cmd(self.dm.resume, snap)
        err = self.dm_cmd(self.dm.resume, origin) or err
        return err or "ok"

    def op_remove(self, s):
        snap, cow = "%s-s%d" % (PREFIX, s), "%s-c%d" % (PREFIX, s)
        if snap not in self.nodes:
            return "no device"
        err = self.dm_cmd(self.remove, snap)
        if err is None:
            self.snaps.pop(s, None)
            self.forget(cow)
        return err or "ok"

    def op_grow(self, s, cow_kib):
        """The COW device grows, and the snapshot's table is loaded again
        (the new table takes the exceptions over), as lvextend does."""
        snap, cow = "%s-s%d" % (PREFIX, s), "%s-c%d" % (PREFIX, s)
        if snap not in self.nodes:
            return "no device"
        steps = (
            (self.dm.load, cow, cow_kib * 2, "linear", "%s 0" % self.cows[s]),
            (self.dm.load, snap, self.sectors, "snapshot", self.snaps[s]),
            (self.dm.suspend, snap),
            (self.dm.suspend, cow),
            (self.dm.resume, cow),
            (self.dm.resume, snap),
        )
        # Its size is known again once all went well.
        COWS[s][1] = None
        for step in steps:
            err = self.dm_cmd(*step)
            if err:
                # Nothing may stay suspended.
                for n in (cow, snap):
                    self.dm_cmd(self.dm.resume, n)
                return "%s: %s" % (step[0].__name__, err)
        COWS[s][1] = cow_kib * 2
        return "ok"

    def op_write(self, dev, off, n, seed):
        return self.io("write", dev, off, n, seed)

    def op_read(self, dev, off, n):
        return self.io("read", dev, off, n)

    def op_discard(self, dev, off, n):
        return self.io("discard", dev, off, n)

    def op_fill(self, seed):
        """A quarter of the origin written at once, from a random sector:
        small COW devices fill up."""
        n = self.sectors // 4
        off = random.Random(seed).randrange(0, self.sectors - n)
        answers = set()
        for k in range(0, n, 512):
            answers.add(self.io("write", "origin", off + k, min(512, n - k), seed + k))
        return ",".join(sorted(answers))

    def op_suspend_resume(self, dev):
        name = PREFIX + "-" + dev
        if name not in self.nodes:
            return "no device"
        err = self.dm_cmd(self.dm.suspend, name)
        return (self.dm_cmd(self.dm.resume, name) or err) or "ok"

    def defaults(self):
        for param, (_, value) in PARAMS.items():
            with open("/sys/module/%s/parameters/%s" % (self.mod, param), "w") as f:
                f.write("%d\n" % value)

    def op_param(self, param, value):
        path = "/sys/module/%s/parameters/%s" % (self.mod, param)
        try:
            with open(path, "w") as f:
                f.write("%d\n" % value)
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            return errno.errorcode[e.errno]

    def op_bad_table(self, s, k):
        name = "%s-s%d" % (PREFIX, s)
        if name in self.nodes:
            return "slot in use"
        if BAD_TABLES[k].startswith("{o} {o}") and KASAN:
            return "not on a KASAN kernel, where C reads freed memory (C_ONLY)"
        params = BAD_TABLES[k].format(o=self.base, c=self.cows[s])
        if "{c}" in BAD_TABLES[k]:
            # What a COW device holds from earlier sequences must not
            # matter ("P 0" takes the chunk size from its header).
            self.wipe(self.cows[s])
        try:
            self.make(name, self.sectors, "snapshot", params)
        except OSError as e:
            return "refused: " + errno.errorcode[e.errno]
        self.remove(name)
        return "accepted"

    def op_hostile(self, s, case):
        """A P snapshot loaded on a COW device written as HOSTILE[CASE]
        has it, read whole, and removed. The kernel's log lines are part
        of the answer (see EXPECTED)."""
        name = "%s-s%d" % (PREFIX, s)
        if name in self.nodes:
            return "slot in use"
        if case not in HOSTILE_IMAGES:
            (magic, valid, version, chunk), exceptions = HOSTILE[case]
            img = mmap.mmap(-1, HOSTILE_SECTORS * SECTOR)
            img[:] = pattern(1, 0, HOSTILE_SECTORS)
            img[:SECTOR] = struct.pack("<IIII", magic, valid, version, chunk).ljust(SECTOR, b"\0")
            # The first metadata area, at chunk 1, ends with a zeroed entry.
            at = chunk if chunk in (8, 16) else 8
            area = b"".join(struct.pack("<QQ", old, new) for old, new in exceptions)
            img[at * SECTOR:2 * at * SECTOR] = area.ljust(at * SECTOR, b"\0")
            HOSTILE_IMAGES[case] = img
        img = HOSTILE_IMAGES[case]
        cdev = self.cow_device(s, HOSTILE_SECTORS)
        fd = os.open(cdev, os.O_WRONLY | os.O_DIRECT)
        os.pwritev(fd, [img], 0)
        os.close(fd)
        try:
            self.make(name, self.sectors, "snapshot", "%s %s P 8" % (self.base, cdev))
            self.dm.resume(name)
        except OSError as e:
            if name in self.nodes:
                self.remove(name)
            self.forget(PREFIX + "-c%d" % s)
            return "refused: %s; log: %s" % (errno.errorcode[e.errno], " | ".join(self.log()))
        st = self.dm.status(name)
        st = st[1] if st else st
        content = self.whole("s%d" % s)
        self.remove(name)
        self.forget(PREFIX + "-c%d" % s)
        return "loaded: %s; content %s; log: %s" % (st, content, " | ".join(self.log()))

    def op_message(self, dev, msg):
        name = PREFIX + "-" + dev
        if name not in self.nodes:
            return "no device"
        try:
            return "ok: " + self.dm.message(name, msg)
        except OSError as e:
            return errno.errorcode[e.errno]

    def op_status(self):
        return "; ".join(self.status_lines())

    def final(self):
        """Every device's status and table line, and each snapshot's and
        the origin's whole content."""
        for line in self.status_lines():
            self.out.append("end " + line)
        for name in sorted(self.nodes):
            if name.startswith(PREFIX + "-c"):
                continue
            dev = name[len(PREFIX) + 1:]
            self.out.append("end %s content: %s" % (dev, self.whole(dev)))

    def whole(self, dev):
        """The hash of each 256 KiB of DEV, from one read; where that
        fails, from a read each, an errno for those that fail."""
        if self.sectors not in WHOLE:
            WHOLE[self.sectors] = mmap.mmap(-1, self.sectors * SECTOR)
        big = WHOLE[self.sectors]
        try:
            fd = os.open(self.nodes[PREFIX + "-" + dev], os.O_RDONLY | os.O_DIRECT)
            try:
                if os.preadv(fd, [big], 0) != len(big):
                    raise OSError(errno.EIO, "short read")
            finally:
                os.close(fd)
        except OSError:
            return " ".join(self.io("read", dev, off, min(512, self.sectors - off))
                            for off in range(0, self.sectors, 512))
        return " ".join(digest(memoryview(big)[off * SECTOR:(off + 512) * SECTOR])
                        for off in range(0, self.sectors, 512))


TIMES = {}  # seconds spent, by operation
BASE_DATA = {}  # the origin's data at the start, by its size
DIRTY = []  # (sector, count) of the origin's disk the sequence may have changed
ORIGIN = {}  # the origin device made for the module loaded now
HOSTILE_IMAGES = {}  # case: the COW device's data
WHOLE = {}  # a buffer for a device's whole content, by its size
COWS = {}  # slot: [device number, sectors] of its COW device, kept throughout


def run_one(dm, mod, base, cows, node_dir, seed, seq):
    r = Run(dm, mod, base, cows, node_dir)
    try:
        t = time.monotonic()
        r.setup(seed)
        TIMES["(setup)"] = TIMES.get("(setup)", 0) + time.monotonic() - t
        for i, o in enumerate(seq):
            t = time.monotonic()
            r.op(i, o)
            TIMES[o[0]] = TIMES.get(o[0], 0) + time.monotonic() - t
        t = time.monotonic()
        r.final()
        TIMES["(end)"] = TIMES.get("(end)", 0) + time.monotonic() - t
    except Exception as e:  # the transcript says where the run stopped
        r.out.append("run stopped: %r" % e)
        print("# seed %d on %s stopped: %r; its last lines:" % (seed, mod, e))
        for line in r.out[-8:]:
            print("#   " + line)
    finally:
        t = time.monotonic()
        try:
            r.teardown()
        except Exception as e:
            r.out.append("teardown: %r" % e)
            print("# seed %d on %s: teardown: %r" % (seed, mod, e))
        TIMES["(teardown)"] = TIMES.get("(teardown)", 0) + time.monotonic() - t
    return r.out


def drop_origin(dm):
    if ORIGIN.pop("rdev", None) is not None:
        dm.remove(PREFIX + "-origin")


def drop_cows(dm):
    for s in sorted(COWS):
        dm.remove("%s-c%d" % (PREFIX, s))
    COWS.clear()


def use(dm, ko):
    """Module KO alone gives the snapshot targets, with no origin yet."""
    drop_origin(dm)
    for m in ("dm_snapshot", "dm_snapshot_rs"):
        if os.path.exists("/sys/module/%s/initstate" % m):
            r = subprocess.run(("rmmod", m), capture_output=True, text=True)
            if r.returncode != 0:
                left = subprocess.run(("dmsetup", "table"), capture_output=True, text=True).stdout
                raise RuntimeError("rmmod %s: %s; devices left:\n%s" % (m, r.stderr.strip(), left))
    subprocess.run(("insmod", ko), check=True)
    return "dm_snapshot_rs" if ko.endswith("dm_snapshot_rs.ko") else "dm_snapshot"


# Where the two differ by design: for a line of C's transcript matching
# the first pattern, ours must give the second instead (with C's line's
# groups, \1 on, in it), for the reason given.
EXPECTED = (
    (r'^(\d+ \["message", "s\d", "stats"\]) -> EINVAL$',
     r'^\1 -> ok: in_progress \d+ max_in_progress \d+ throttled_waits \d+ unthrottled \d+ threshold \d+$',
     "ours answers the message stats with its COW throttle's counters (an extension); "
     "C's snapshot target takes no messages"),
    (r'^(\d+ \["hostile", \d, "(?:new chunk past the device end|new chunk on its metadata area|'
     r'new chunk on a later metadata area|old chunk repeated|huge old and new chunk)"\]) -> loaded: .*$',
     r'^\1 -> refused: EINVAL; log: (exception beyond the end of the COW device|'
     r'exception points to a metadata chunk|exception for origin chunk \d+ repeated in metadata) \| '
     r'device-mapper: table: [^:]+: snapshot: Failed to read snapshot metadata \(-22\) \| '
     r'device-mapper: ioctl: error adding target to table$',
     "C's store does not check the exceptions it reads: it serves a chunk from past the COW "
     "device's end (I/O errors), from metadata (what a later commit overwrites), or the "
     "newer of two exceptions for one chunk; ours refuses the device and says why"),
    (r'^(\d+ \["hostile", \d, "chunk size beyond the device"\]) -> refused: EIO; log: (.*) \| '
     r'device-mapper: table: ([^:]+): snapshot: Failed to read snapshot metadata \(-5\) \| (.*)$',
     r'^\1 -> refused: EINVAL; log: \2 \| chunk size in device metadata exceeds the device \| '
     r'device-mapper: table: \3: snapshot: Failed to read snapshot metadata \(-22\) \| \4$',
     "C takes a chunk size larger than the COW device from its header and then fails "
     "reading past the device's end (EIO); ours refuses the header and says why"),
)


# Lines of C's transcript that ours must not have, for the reason given.
C_ONLY = (
    (r"^    log: device-mapper: table: [^:]+: device .* not in table devices list$",
     "C's snapshot_ctr, given the origin's device as the COW device, gets it "
     "a second time read-write, which frees the first dm_dev (dm core "
     "upgrades the table's one entry); it then reads that freed dm_dev to "
     "compare the two (KASAN: slab-use-after-free in snapshot_ctr) and puts "
     "it, which dm core does not find; the refusal is the same"),
    (r"^    log: device-mapper: table: [^:]+: dm_table_destroy: dm_put_device call missing for BASE$",
     "the same: the reference C did not put"),
    (r"^    log: device-mapper: ioctl: Target type does not support messages$",
     "C's snapshot target takes no message: dm core logs its refusal"),
)
# Lines of ours that C's transcript does not have, for the reason given.
OURS_ONLY = (
    (r"^    log: Unrecognised message received\.$",
     "ours takes the message stats (see EXPECTED), and logs the refusal of "
     "any other, as targets that take messages do"),
)


def same(x, y):
    if x == y:
        return True
    for c_line, ours, _ in EXPECTED:
        m = re.match(c_line, x)
        if m and re.match(re.sub(r"\\(\d)", lambda g: re.escape(m.group(int(g.group(1)))), ours), y):
            return True
    return False


def compared(a, b):
    """C's transcript A and ours B as compared: C_ONLY and OURS_ONLY out."""
    return ([x for x in a if not any(re.match(p, x) for p, _ in C_ONLY)],
            [y for y in b if not any(re.match(p, y) for p, _ in OURS_ONLY)])


def first_difference(a, b):
    """The first line where B (ours) differs from A (C's), EXPECTED aside;
    A and B as compared() gives them."""
    for k, (x, y) in enumerate(zip(a, b)):
        if not same(x, y):
            return k
    return None if len(a) == len(b) else min(len(a), len(b))


class Pair:
    def __init__(self, kos, base, cows):
        self.kos, self.base, self.cows = kos, base, cows
        self.dm = Dm()
        self.node_dir = "/tmp/dm-snap-test/diff-nodes"
        os.makedirs(self.node_dir, exist_ok=True)
        self.runs = 0

    def both(self, seed, seq):
        outs = []
        for ko in self.kos:
            mod = use(self.dm, ko)
            outs.append(run_one(self.dm, mod, self.base, self.cows, self.node_dir, seed, seq))
            self.runs += 1
        return outs

    def shrink(self, seed, seq, budget):
        """The shortest sequence found that still shows a difference:
        chunks of operations left out, halves first, while one shows."""
        n = 2
        while len(seq) >= 2 and budget > 0:
            size = max(1, len(seq) // n)
            smaller = False
            for start in range(0, len(seq), size):
                if budget <= 0:
                    break
                cand = seq[:start] + seq[start + size:]
                budget -= 1
                a, b = compared(*self.both(seed, cand))
                if first_difference(a, b) is not None:
                    seq, smaller = cand, True
                    n = max(n - 1, 2)
                    break
            if not smaller:
                if size == 1:
                    break
                n = min(n * 2, len(seq))
        return seq


def main():
    if sys.argv[1] == "gen":
        seed, ops, sectors, slots = map(int, sys.argv[2:6])
        print(json.dumps({"seed": seed, "ops": generate(seed, ops, sectors, slots)}))
        return 0
    if sys.argv[1] == "replay":
        kos, path, base, cows = sys.argv[2:4], sys.argv[4], sys.argv[5], sys.argv[6:]
        case = json.load(open(path))
        pair = Pair(kos, base, cows)
        a, b = compared(*pair.both(case["seed"], case["ops"]))
        drop_origin(pair.dm)
        drop_cows(pair.dm)
        for k in range(max(len(a), len(b))):
            x = a[k] if k < len(a) else ""
            y = b[k] if k < len(b) else ""
            print(("  " + x) if same(x, y) else ("! %s\n  | %s" % (x, y)))
        return 0
    kos = sys.argv[2:4]
    sequences, ops, seed0 = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    base, cows = sys.argv[7], sys.argv[8:]
    pair = Pair(kos, base, cows)
    size = disk_sectors(base)
    seqs = [(seed, generate(seed, ops, size, len(cows))) for seed in range(seed0, seed0 + sequences)]
    t0 = time.monotonic()
    outs = []
    for ko in kos:
        mod = use(pair.dm, ko)
        outs.append([run_one(pair.dm, mod, base, cows, pair.node_dir, seed, seq) for seed, seq in seqs])
        pair.runs += len(seqs)
    bad = 0
    nops = sum(len(s) for _, s in seqs)
    for (seed, seq), a, b in zip(seqs, outs[0], outs[1]):
        a, b = compared(a, b)
        k = first_difference(a, b)
        if k is None:
            continue
        bad += 1
        print("# seed %d: the first difference, at line %d of the transcript:" % (seed, k))
        print("#   %s: %s" % (os.path.basename(kos[0]), a[k] if k < len(a) else "(end)"))
        print("#   %s: %s" % (os.path.basename(kos[1]), b[k] if k < len(b) else "(end)"))
        if bad <= 3:
            small = pair.shrink(seed, seq, 40)
            print("# shortest sequence found (%d of %d operations), for diff.py replay:" % (len(small), len(seq)))
            print(json.dumps({"seed": seed, "ops": small}))
    drop_origin(pair.dm)
    drop_cows(pair.dm)
    stopped = sum(1 for o in outs[0] + outs[1] if any(l.startswith("run stopped") for l in o))
    print("# %d sequences, %d operations, %d runs, %d differing, %d runs stopped early, %.0f s" %
          (len(seqs), nops, pair.runs, bad, stopped, time.monotonic() - t0))
    print("# seconds by operation: " + ", ".join("%s %.1f" % kv for kv in sorted(TIMES.items())))
    # A run that stopped is the test's own failure, even on both.
    return 1 if bad or stopped else 0


if __name__ == "__main__":
    sys.exit(main())
