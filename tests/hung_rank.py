#!/usr/bin/env python3
"""A data-parallel rank process that hangs is found by its heartbeats, killed and reported dead, by rank.

usage: hung_rank.py TROUPE

Rank 0 of a 3-process ring (comm.transport = tcp, comm.timeout_s = 8, and fault.max_restarts = 0: no
restart, which tests/replica_restart.py covers) trains; SIGSTOP freezes rank 1
(runtime/process/heartbeat.h: its heartbeats stop). Rank 0 must end the run within comm.timeout_s of the
stop, exit non-zero, name rank 1 as the rank that hung and was killed, and leave no rank process
behind. (Without heartbeats the run waits out comm.timeout_s in a collective, and in a ring rank 0
waits on rank 2, which it then blames.)
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rank_processes import children_of, rank_of, alive  # noqa: E402
from rank_zero import SMALL_GPT_OVER_TCP, fail, scratch, start, stderr_text  # noqa: E402

TIMEOUT_S = 8
SMALL = SMALL_GPT_OVER_TCP + ["--set", "train.batch_size=12", "--set", "comm.timeout_s=%d" % TIMEOUT_S,
                              "--set", "parallel.data=3", "--set", "fault.max_restarts=0", "--steps", "100000"]


def main():
    troupe = sys.argv[1]
    scratch("troupe-hung-")
    rank0 = start(troupe, SMALL)
    deadline = time.time() + 60
    kids = []
    while time.time() < deadline and len(kids) < 2:
        kids = children_of(rank0.pid)
        time.sleep(0.01)
    if len(kids) < 2:
        rank0.kill()
        fail("rank 0 started %d rank processes, not 2" % len(kids))
    time.sleep(4.0)  # training (the rendezvous and the first steps take well under this on 2 cores)
    if rank0.poll() is not None:
        fail("rank 0 ended early with %s" % rank0.returncode)
    stopped = [k for k in kids if rank_of(k) == 1][0]
    stopped_at = time.time()
    os.kill(stopped, signal.SIGSTOP)
    try:
        code = rank0.wait(timeout=TIMEOUT_S + 20)
    except subprocess.TimeoutExpired:
        rank0.kill()
        for k in kids:
            if alive(k):
                os.kill(k, signal.SIGKILL)
        fail("rank 0 still ran %d s after rank 1 was stopped (comm.timeout_s = %d)" % (TIMEOUT_S + 20, TIMEOUT_S))
    took = time.time() - stopped_at
    time.sleep(0.5)
    left = [k for k in kids if alive(k)]
    for k in left:
        os.kill(k, signal.SIGCONT)
        os.kill(k, signal.SIGKILL)
    text = stderr_text()
    print("rank 0 exited with %d, %.2f s after rank 1 was stopped; its stderr ends:\n%s" % (code, took, text[-1500:]))
    if code == 0:
        fail("rank 0 exited 0")
    if left:
        fail("rank processes %s were left running" % left)
    if took > TIMEOUT_S:
        fail("the hung rank was found after %.2f s, more than comm.timeout_s = %d" % (took, TIMEOUT_S))
    if "rank 1" not in text or "heartbeat" not in text or "killed" not in text:
        fail("rank 0's error does not say that rank 1 hung (no heartbeat) and was killed")


main()
