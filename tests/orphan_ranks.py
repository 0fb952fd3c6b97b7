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
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rank_processes import children_of, alive  # noqa: E402

# comm.address port 0: a free port, so a test running beside this one on the default port cannot take it.
SMALL = ["--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
         "--set", "model.block_size=16", "--set", "train.batch_size=8", "--set", "train.threads=1",
         "--set", "train.eval_every=0", "--set", "comm.transport=tcp", "--set", "comm.address=127.0.0.1:0",
         "--set", "comm.timeout_s=600",
         "--set", "parallel.data=2", "--steps", "100000"]


WORK = None


def fail(msg):
    print("FAIL: " + msg)
    if WORK and os.path.exists(os.path.join(WORK, "stderr.txt")):
        with open(os.path.join(WORK, "stderr.txt")) as f:
            print("rank 0's stderr:\n" + f.read()[-4000:])  # what the run said, for a failure seen once
    sys.exit(1)






def main():
    troupe, case = sys.argv[1], sys.argv[2]
    extra = []
    if case == "during_rendezvous":
        extra = ["--set", "parallel.data=3", "--set", "train.batch_size=12"]
    if case == "ps_worker":
        extra = ["--set", "parallel.gradient_exchange=ps"]
    global WORK
    work = WORK = tempfile.mkdtemp(prefix="troupe-orphan-")
    err = open(os.path.join(work, "stderr.txt"), "w")
    rank0 = subprocess.Popen([troupe, "train"] + SMALL + extra, cwd=work, stdout=subprocess.DEVNULL, stderr=err,
                             stdin=subprocess.DEVNULL)
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
    err.close()
    with open(os.path.join(work, "stderr.txt")) as f:
        text = f.read()
    # Its parent watch, or (when it had already joined) its broken connection, says why.
    if "its rank 0) is gone" not in text and "rank 0" not in text:
        fail("no rank process said why it exits; stderr:\n" + text)


main()
