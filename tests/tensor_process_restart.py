#!/usr/bin/env python3
"""A tensor-shard process that dies, hangs or throws is restarted by rank 0, and nothing is lost.

usage: tensor_process_restart.py TROUPE CASE

Real `troupe train` runs of a small GPT with its tensor shards as processes over tcp, in deterministic mode
(docs/failures.md, "Tensor-shard processes"):
  kill      SIGKILL rank 1 (tensor shard 1) of parallel.tensor = 2 mid-run: rank 0 restarts it, the new
            process takes its shard's state from the copy rank 0 keeps, the world re-forms, the step is re-run;
  stop      SIGSTOP rank 1: its heartbeats stop, rank 0 kills it within comm.timeout_s and restarts it;
  throw     fault.inject "throw shard 1 at step 7": its step throws, its process dies of it and is restarted;
  throw0    fault.inject "throw shard 0 at step 7": rank 0's own shard actor fails and is restarted in place,
            rank 1 (the same process) re-runs the step with it;
  dp-tp     2 replicas x 2 shards, fault.inject "kill shard 1 at step 6 on replica 1": rank 3 dies, its new
            process takes its state live from rank 1 (shard 1 of replica 0);
  escalate  fault.max_restarts = 1 and "kill shard 1 at step 4; kill shard 1 at step 9": the run stops with
            the supervisor's escalation (naming the rank, its place and the restart before), exit 1, no
            process left.
For every case but escalate: exit 0, exactly the expected restarts reported, losses and final weights bitwise
those of the same run without a fault, and the surviving rank processes the same processes (PIDs unchanged).
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rank_processes import ranks_now  # noqa: E402
from rank_zero import (check_escalation, check_process_restart, check_recovered, ended, fail, run_clean, scratch,  # noqa: E402
                       start, stderr_text, steps_done, wait_for, watch_survivors)

TIMEOUT_S = 4
STEPS = 60
SMALL = ["--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
         "--set", "model.block_size=16", "--set", "train.batch_size=8", "--set", "train.threads=1",
         "--set", "train.eval_every=0", "--set", "train.deterministic=true", "--set", "comm.transport=tcp",
         "--set", "comm.timeout_s=%d" % TIMEOUT_S, "--set", "comm.address=127.0.0.1:0", "--steps", str(STEPS)]
TP2 = ["--set", "parallel.tensor=2"]
CASES = {  # layout, fault.inject, the rank hurt, restarts expected
    "kill": (TP2, None, 1, 1),
    "stop": (TP2, None, 1, 1),
    "throw": (TP2, "throw shard 1 at step 7", 1, 1),
    "throw0": (TP2, "throw shard 0 at step 7", None, 1),
    "dp-tp": (TP2 + ["--set", "parallel.data=2"], "kill shard 1 at step 6 on replica 1", 3, 1),
    "escalate": (TP2 + ["--set", "fault.max_restarts=1"], "kill shard 1 at step 4; kill shard 1 at step 9", 1, 1),
}
RUN = None














def restarts_in(work):
    return len(re.findall(r"rank 0 restarted it", stderr_text()))


def main():
    troupe, case = sys.argv[1], sys.argv[2]
    global RUN
    layout, clause, victim_rank, expected = CASES[case]
    work = scratch("troupe-tp-restart-")
    base = SMALL + layout
    if case != "escalate":
        run_clean(troupe, base)
    faulty = base + (["--set", "fault.inject=" + clause] if clause else [])
    RUN = start(troupe, faulty + ["--dump-losses", "faulty.jsonl", "--save", "faulty.st"])
    size = 4 if case == "dp-tp" else 2
    wait_for("%d rank processes" % (size - 1), lambda: len(ranks_now(RUN.pid)) == size - 1, 60)
    kids = ranks_now(RUN.pid)
    print("rank processes before the fault:", kids)
    if case in ("kill", "stop"):
        wait_for("step 15", lambda: steps_done() >= 15, 120)
        hurt = time.time()
        os.kill(kids[1], signal.SIGSTOP if case == "stop" else signal.SIGKILL)
        wait_for("restart of the hurt rank", lambda: restarts_in(work) >= 1, TIMEOUT_S + 30)
        took = time.time() - hurt
        print("rank 1 restarted %.2f s after %s" % (took, "SIGSTOP" if case == "stop" else "SIGKILL"))
        if case == "stop" and took > TIMEOUT_S:
            fail("the stopped rank was found after %.2f s, more than comm.timeout_s = %d" % (took, TIMEOUT_S))
    # Until the end, the survivors are the same processes.
    survivors, seen_new = watch_survivors(kids, victim_rank)
    code, text = ended(kids.values())
    if case == "escalate":
        check_escalation(code, text, ["tensor-parallel rank 1", "the supervisor gives up", "fault.max_restarts = 1",
                                      "the 1 restart before", "the process of tensor-parallel rank 1 (replica 0 of "
                                      "parallel.data = 1, tensor shard 1 of parallel.tensor = 2"])
        print("OK: escalated past fault.max_restarts = 1, naming the rank, its place and the restart before")
        return
    check_recovered(code, restarts_in(work), expected)
    if victim_rank is not None and not seen_new and case != "kill":
        print("(the restarted rank %d ran too briefly to be seen)" % victim_rank)
    check_process_restart(case, text, survivors)


main()
