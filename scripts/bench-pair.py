#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# Part of scripts/bench-throttle-guest.sh: writes to a chunk whose copy is in flight.
#
# For each chunk of a region: a "lead" write of its first 4 KiB starts the
# chunk's copy; as soon as that copy is seen reading the origin (the region
# sits on a dm-delay device of its own, so its in-flight read count says
# so) and FOLLOW_AFTER ms later (late in the copy), a "follow" write of the
# chunk's second 4 KiB is timed. The chunk's
# copy is in flight when the follower arrives, so it needs no copy of its
# own: it can be queued on the lead's copy. Also recorded: how long after
# the lead write the follow write completed.
#
# Usage: bench-pair.py ORIGIN INFLIGHT_FILE OFFSET CHUNK SECONDS FOLLOW_AFTER OUT_JSON

import json
import mmap
import os
import sys
import threading
import time

origin, inflight, offset, chunk, seconds, after, out = sys.argv[1:8]
offset, chunk, seconds, after = int(offset), int(chunk), float(seconds), float(after) / 1e3


def reads_in_flight():
    with open(inflight) as f:
        return int(f.read().split()[0])


def normal_priority():
    # Only the polling runs at real-time priority (chrt): the writes run as
    # ordinary tasks, like the other writers, so no wake-up race is won by
    # priority.
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def buffer(byte):
    m = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT wants
    m.write(byte * 4096)
    return m


fd = os.open(origin, os.O_WRONLY | os.O_DIRECT)
lead_buf, follow_buf = buffer(b"L"), buffer(b"F")
lead, follow, lag, missed = [], [], [], 0
deadline = time.monotonic() + seconds
i = 0
while time.monotonic() < deadline:
    off = offset + i * chunk
    i += 1
    took = {}

    def lead_write(off=off, took=took):
        normal_priority()
        t = time.monotonic()
        os.pwrite(fd, lead_buf, off)
        took["end"] = time.monotonic()
        took["lat"] = took["end"] - t

    th = threading.Thread(target=lead_write)
    th.start()
    while th.is_alive() and reads_in_flight() == 0:
        time.sleep(0.0005)
    if not th.is_alive():
        missed += 1  # the copy's read came and went between two looks
        th.join()
        continue
    rt = os.sched_getscheduler(0), os.sched_getparam(0)
    normal_priority()
    time.sleep(after)
    t = time.monotonic()
    os.pwrite(fd, follow_buf, off + 4096)
    end = time.monotonic()
    os.sched_setscheduler(0, *rt)
    follow.append(end - t)
    th.join()
    lead.append(took["lat"])
    # How long the follower finished after the lead: about 0 when both
    # were completed by the chunk's copy; more when the follower slept.
    lag.append(end - took["end"])
os.close(fd)
json.dump({"lead": lead, "follow": follow, "lag": lag, "missed": missed}, open(out, "w"))
