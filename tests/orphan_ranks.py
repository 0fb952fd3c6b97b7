#!/usr/bin/env python3
"""Rank processes end promptly when their rank 0 is killed (runtime/process/parent_watch.h).

usage: orphan_ranks.py TROUPE CASE
  during_training     SIGKILL to rank 0 of a 2-process data-parallel run while it trains: its rank 1
                      exits within 10 s (without the watch it would wait out comm.timeout_s = 600)
  during_rendezvous   SIGKILL to rank 0 of a 3-process run as soon as its children exist, before they
                      connect (without the watch they retry the connection until comm.timeout_s)
  ps_worker           SIGKILL to rank 0 of a 2-worker parameter-server run: the worker process exits
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rank_processes import children_of, alive  # noqa: E402
from rank_zero import SMALL_GPT_OVER_TCP, fail, scratch, start, stderr_text  # noqa: E402

SMALL = SMALL_GPT_OVER_TCP + ["--set", "train.batch_size=8", "--set", "comm.timeout_s=600",
                              "--set", "parallel.data=2", "--steps", "100000"]






def main():
    troupe, case = sys.argv[1], sys.argv[2]
    extra = []
    if case == "during_rendezvous":
        extra = ["--set", "parallel.data=3", "--set", "train.batch_size=12"]
    if case == "ps_worker":
        extra = ["--set", "parallel.gradient_exchange=ps"]
    work = scratch("troupe-orphan-")
    rank0 = start(troupe, SMALL + extra)
    deadline = time.time() + 60
    kids = []
    while time.time() < deadline and not kids:
        kids = children_of(rank0.pid)
        time.sleep(0.002)
    if not kids:
        rank0.kill()
        fail("rank 0 started no rank process")
    if case == "during_rendezvous":
        pass  # killed at once, before its children (still starting) connect: they would retry until
              # comm.timeout_s
    else:
        time.sleep(3.0)  # training (the first steps take well under this on 2 cores)
    if rank0.poll() is not None:
        fail("rank 0 ended early with %s (see %s)" % (rank0.returncode, work))
    killed_at = time.time()
    rank0.send_signal(signal.SIGKILL)
    rank0.wait()
    while time.time() < killed_at + 10 and any(alive(k) for k in kids):
        time.sleep(0.05)
    left = [k for k in kids if alive(k)]
    for k in left:
        os.kill(k, signal.SIGKILL)
    if left:
        fail("rank processes %s still ran 10 s after rank 0 was killed" % left)
    print("rank processes %s exited %.2f s after rank 0 was killed" % (kids, time.time() - killed_at))
    text = stderr_text()
    # Its parent watch, or (when it had already joined) its broken connection, says why.
    if "its rank 0) is gone" not in text and "rank 0" not in text:
        fail("no rank process said why it exits; stderr:\n" + text)


main()
