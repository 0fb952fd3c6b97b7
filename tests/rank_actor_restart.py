#!/usr/bin/env python3
"""An actor restarted inside a rank process other than rank 0 is reported to rank 0, which lists it once.

usage: rank_actor_restart.py TROUPE CASE

Real `troupe train` runs of 3 replica processes over tcp in deterministic mode (docs/failures.md, "Restarts
inside rank processes"); the fault is a `fault.inject` clause `on replica R >= 1`, so it strikes inside rank
R's process, whose own supervisor restarts the actor (no process is restarted):
  throw           `throw stage 0 at step 7 on replica 1`: the stage redoes its step alone, the group never
                  re-forms;
  throw-update    `throw optimizer 0 at step 7 on replica 2`: a death in the update, so every process
                  re-forms the group and re-runs the step;
  escalate        fault.max_restarts = 1 and two throws on replica 1: rank 1's supervisor gives up, and rank 0
                  stops the job with its escalation (exit 1, no weights, no process left), as it does when its
                  own supervisor gives up.
For throw and throw-update: exit 0, losses and final weights bitwise those of the same run without the fault,
every rank process the same process to the end, and rank 0's report (its stdout and the run directory's
log.txt) lists the restart exactly once, naming the rank, the actor and the step, and nothing else.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rank_processes import ranks_now  # noqa: E402
from rank_zero import (SMALL_GPT_OVER_TCP, check_bitwise, check_escalation, ended, fail, run_clean,  # noqa: E402
                       scratch, start, stdout_text, wait_for, watch_survivors)

STEPS = 12
SMALL = SMALL_GPT_OVER_TCP + ["--set", "train.batch_size=12", "--set", "train.deterministic=true",
                              "--set", "comm.timeout_s=6", "--set", "parallel.data=3", "--steps", str(STEPS)]
CASES = {
    "throw": (["--set", "fault.inject=throw stage 0 at step 7 on replica 1"],
              "rank 1/replica 1/stage 0 in step 7: stage 0: injected fault"),
    "throw-update": (["--set", "fault.inject=throw optimizer 0 at step 7 on replica 2"],
                     "rank 2/replica 2/stage 0/optimizer state in step 7: optimizer state of stage 0: injected fault"),
    "escalate": (["--set", "fault.max_restarts=1",
                  "--set", "fault.inject=throw stage 0 at step 3 on replica 1; throw stage 0 at step 7 on replica 1"],
                 None),
}


def main():
    troupe, case = sys.argv[1], sys.argv[2]
    fault, listed = CASES[case]
    work = scratch("troupe-rank-actor-restart-")
    if case != "escalate":
        run_clean(troupe, SMALL)
    run = start(troupe, SMALL + fault + ["--dump-losses", "faulty.jsonl", "--save", "faulty.st", "--run-dir", "run"],
                keep_stdout=True)
    wait_for("2 rank processes", lambda: len(ranks_now(run.pid)) == 2, 60)
    kids = ranks_now(run.pid)
    print("rank processes:", kids)
    # No rank process is restarted: the actor is, inside its process.
    watch_survivors(kids if case != "escalate" else {}, None, poll_s=0.02)
    code, err = ended(kids.values())
    out = stdout_text()
    if case == "escalate":
        check_escalation(code, err, ["in the process of data-parallel rank 1", "stage actor replica 1/stage 0",
                                     "died in step 7", "the supervisor gives up", "fault.max_restarts = 1",
                                     "the 1 restart before", "replica 1/stage 0 in step 3"])
        if "rank 0 restarted it as process" in err:
            fail("rank 0 restarted the process whose supervisor gave up")
        print("OK: rank 1's escalation stopped the job at rank 0")
        return
    if code != 0:
        fail("rank 0 exited %d" % code)
    log = open(os.path.join(work, "run", "log.txt")).read()
    for name, text in [("rank 0's output", out), ("the run directory's log.txt", log)]:
        if not re.search(r"^1 restart \(fault\.max_restarts = 3\):$", text, re.M):
            fail("%s does not count 1 restart:\n%s" % (name, text[-1500:]))
        lines = [line for line in text.splitlines() if line.startswith("  ") and "; re-run " in line]
        if len(lines) != 1 or listed not in lines[0]:
            fail("%s lists %s, not the one restart '%s ...'" % (name, lines, listed))
        if "recovered (the step done)" not in lines[0]:
            fail("the restart has no recovery time: " + lines[0])
    if "rank 0 restarted it as process" in err:
        fail("a rank process was restarted")
    steps = check_bitwise()
    print("OK: %d steps bitwise equal to the run without faults; rank 0 listed once: %s" % (steps, listed))


main()
