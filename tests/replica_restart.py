#!/usr/bin/env python3
"""A data-parallel replica process that dies or hangs is restarted by rank 0, and nothing is lost.

usage: replica_restart.py TROUPE CASE

Real `troupe train` runs over tcp in deterministic mode (docs/failures.md, "Replica processes"):
  kill      SIGKILL rank 1 of a 3-process ring mid-run: rank 0 restarts it, the new process takes its
            state from rank 0, the group re-forms and re-runs the step;
  kill-pp   the same with 3 replicas x 2 pipeline stages and all-to-all exchange;
  stop      SIGSTOP rank 1 of a 3-process ring: its heartbeats stop, rank 0 kills it within
            comm.timeout_s, restarts it, and the run goes on;
  escalate  fault.max_restarts = 1 and rank 1 killed twice: the run stops with the supervisor's
            escalation (naming the rank, its place and the restart before), exit 1, no process left.
For kill, kill-pp and stop: exit 0, later losses and final weights bitwise those of the same run without a
fault, and the surviving rank processes are the same processes (their PIDs unchanged) to the end.
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rank_processes import ranks_now  # noqa: E402
from rank_zero import (SMALL_GPT_OVER_TCP, check_escalation, check_process_restart, check_recovered, ended, fail,  # noqa: E402
                       run_clean, scratch, start, stderr_text, steps_done, wait_for, watch_survivors)

TIMEOUT_S = 6
STEPS = 200
SMALL = SMALL_GPT_OVER_TCP + ["--set", "train.batch_size=12", "--set", "train.deterministic=true",
                              "--set", "comm.timeout_s=%d" % TIMEOUT_S, "--steps", str(STEPS)]
LAYOUTS = {
    "kill": ["--set", "parallel.data=3"],
    "kill-pp": ["--set", "parallel.data=3", "--set", "parallel.pipeline=2", "--set", "parallel.microbatches=2",
                "--set", "parallel.gradient_exchange=alltoall"],
    "stop": ["--set", "parallel.data=3"],
    "escalate": ["--set", "parallel.data=3", "--set", "fault.max_restarts=1"],
}
RUN = None










def restarts_in():
    return len(re.findall(r"rank 0 restarted it as process", stderr_text()))


def fault(case, work, kids):
    """Hurts rank 1 as `case` says once the run is well under way; returns how many restarts to expect."""
    wait_for("step 40", lambda: steps_done() >= 40, 120)
    victim = kids[1]
    if case == "stop":
        os.kill(victim, signal.SIGSTOP)
        stopped = time.time()
        wait_for("restart of the stopped rank", lambda: restarts_in() >= 1, TIMEOUT_S + 30)
        took = time.time() - stopped
        print("the stopped rank 1 was killed and restarted %.2f s after SIGSTOP (comm.timeout_s = %d)" % (took, TIMEOUT_S))
        if took > TIMEOUT_S:
            fail("the stopped rank was found after %.2f s, more than comm.timeout_s = %d" % (took, TIMEOUT_S))
        return 1
    os.kill(victim, signal.SIGKILL)
    wait_for("restart of the killed rank", lambda: restarts_in() >= 1, 60)
    if case == "escalate":
        wait_for("the restarted rank 1", lambda: ranks_now(RUN.pid).get(1, victim) != victim, 30)
        wait_for("progress after the restart", lambda: steps_done() >= 60, 120)
        os.kill(ranks_now(RUN.pid)[1], signal.SIGKILL)
    return 1


def main():
    troupe, case = sys.argv[1], sys.argv[2]
    global RUN
    work = scratch("troupe-restart-")
    layout = SMALL + LAYOUTS[case]
    if case != "escalate":
        run_clean(troupe, layout)
    RUN = start(troupe, layout + ["--dump-losses", "faulty.jsonl", "--save", "faulty.st"])
    replicas = int([a for a in layout if a.startswith("parallel.data=")][0].split("=")[1])
    wait_for("%d rank processes" % (replicas - 1), lambda: len(ranks_now(RUN.pid)) == replicas - 1, 60)
    kids = ranks_now(RUN.pid)
    print("rank processes before the fault:", kids)
    fault(case, work, kids)
    # Until the end, the survivors are the same processes and rank 1 is a new one.
    survivors, _ = watch_survivors(kids, 1, hurt_must_be_new=case != "escalate", poll_s=0.02)
    code, text = ended(kids.values())
    if case == "escalate":
        check_escalation(code, text, ["data-parallel rank 1", "the supervisor gives up", "fault.max_restarts = 1",
                                      "the 1 restart before", "replica process of data-parallel rank 1"])
        return
    check_recovered(code, restarts_in(), 1)
    check_process_restart(case, text, survivors)


main()
