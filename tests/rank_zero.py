"""Owns rank 0 of a test's run whose ranks are processes: `troupe train` started in a fresh scratch directory
that keeps its stderr, the watch on its rank processes until it ends, what its end must show (the restarts,
bitwise the run without a fault, or the escalation), and the test's failure, which shows that stderr. Shared by tests/orphan_ranks.py,
tests/hung_rank.py, tests/replica_restart.py, tests/tensor_process_restart.py and tests/rank_actor_restart.py."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

# A GPT small enough for 3 rank processes on 2 cores, each on one thread, over loopback tcp. comm.address
# port 0: a free port, so that a test running beside this one on the default port cannot take it.
SMALL_GPT_OVER_TCP = ["--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
                      "--set", "model.block_size=16", "--set", "train.threads=1", "--set", "train.eval_every=0",
                      "--set", "comm.transport=tcp", "--set", "comm.address=127.0.0.1:0"]

_work = None
_rank0 = None


def scratch(prefix):
    """A fresh directory for this test's runs; fail() shows the stderr.txt that rank 0 leaves in it."""
    global _work
    _work = tempfile.mkdtemp(prefix=prefix)
    return _work


def start(troupe, args, keep_stdout=False):
    """`troupe train ARGS` in the scratch directory, its stderr in stderr.txt and its stdout dropped (or, with
    keep_stdout, in stdout.txt: stdout_text()); the process."""
    global _rank0
    with open(os.path.join(_work, "stderr.txt"), "w") as err, \
            open(os.path.join(_work, "stdout.txt") if keep_stdout else os.devnull, "w") as out:
        _rank0 = subprocess.Popen([troupe, "train"] + args, cwd=_work, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    return _rank0


def stdout_text():
    """What rank 0 has written to its stdout so far (started with keep_stdout)."""
    with open(os.path.join(_work, "stdout.txt")) as f:
        return f.read()


def stderr_text():
    """What rank 0 has written to its stderr so far."""
    with open(os.path.join(_work, "stderr.txt")) as f:
        return f.read()


def fail(msg):
    """Ends the test as failed: the message, the end of rank 0's stderr (for a failure seen once), and rank 0
    killed if it still runs."""
    print("FAIL: " + msg)
    if _work and os.path.exists(os.path.join(_work, "stderr.txt")):
        print("rank 0's stderr:\n" + stderr_text()[-4000:])
    if _rank0 and _rank0.poll() is None:
        _rank0.kill()
    sys.exit(1)


def wait_for(what, check, seconds):
    """Waits until check() holds; fails the test when rank 0 ends first or `seconds` pass."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        if _rank0.poll() is not None:
            fail("rank 0 ended (exit %s) while waiting for %s" % (_rank0.returncode, what))
        time.sleep(0.005)
    fail("no %s within %d s" % (what, seconds))


def losses(path):
    """Each step's loss and gradient norm from a --dump-losses file (the timings differ from run to run)."""
    with open(path) as f:
        return [(r["step"], r["loss"], r.get("grad_norm")) for r in map(json.loads, f)]


def steps_done(name="faulty.jsonl"):
    """How many steps the running --dump-losses NAME (its .partial file in the scratch directory) holds so far."""
    try:
        with open(os.path.join(_work, name + ".partial")) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def ended(rank_pids):
    """After rank 0 ended: its exit code and stderr (the end printed), once no rank process is left running —
    none of `rank_pids` and none rank 0 still has; any that is, is killed and fails the test."""
    from rank_processes import alive, ranks_now
    code = _rank0.returncode
    text = stderr_text()
    print("rank 0 exited with %d; its stderr ends:\n%s" % (code, text[-1500:]))
    time.sleep(0.3)
    left = [p for p in list(rank_pids) + list(ranks_now(_rank0.pid).values()) if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    if left:
        fail("rank processes %s were left running" % left)
    return code, text


def run_clean(troupe, args):
    """The same run without the fault, in the scratch directory: clean.jsonl and clean.st; fails the test when it
    fails."""
    clean = subprocess.run([troupe, "train"] + args + ["--dump-losses", "clean.jsonl", "--save", "clean.st"],
                           cwd=_work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    if clean.returncode != 0:
        fail("the run without faults failed: " + clean.stderr[-2000:])


def watch_survivors(kids, hurt_rank, hurt_must_be_new=False, poll_s=0.005):
    """Until rank 0 ends, checks that every rank process in `kids` ({rank: pid}, taken before the fault) but
    `hurt_rank`'s (None: every one) stays the same process, and with hurt_must_be_new that the hurt rank never
    runs as the hurt process again; fails the test otherwise. Returns the survivors ({rank: pid}) and whether a
    new process was seen for the hurt rank (one restarted just before the end can run too briefly to be seen)."""
    from rank_processes import ranks_now
    survivors = {r: p for r, p in kids.items() if r != hurt_rank}
    seen_new = False
    while _rank0.poll() is None:
        now = ranks_now(_rank0.pid)
        for r, p in survivors.items():
            if r in now and now[r] != p:
                fail("surviving rank %d was restarted as a process: process %d, then %d" % (r, p, now[r]))
        if hurt_rank is not None and hurt_rank in now:
            if now[hurt_rank] != kids[hurt_rank]:
                seen_new = True
            elif hurt_must_be_new:
                fail("rank %d still runs as the process that was hurt" % hurt_rank)
        time.sleep(poll_s)
    return survivors, seen_new


def check_recovered(code, restarts, expected):
    """After rank 0 ended: it exited 0 with the `expected` restarts reported (`restarts` of them were)."""
    if code != 0:
        fail("rank 0 exited %d" % code)
    if restarts != expected:
        fail("%d restarts reported, not %d" % (restarts, expected))


def check_bitwise():
    """The faulty run's losses and final weights (faulty.jsonl, faulty.st) are bitwise the clean run's; fails the
    test when not. Returns the steps compared."""
    a, b = losses(os.path.join(_work, "clean.jsonl")), losses(os.path.join(_work, "faulty.jsonl"))
    if a != b:
        diff = [(x, y) for x, y in zip(a, b) if x != y][:3]
        fail("losses differ from the run without faults (%d vs %d steps), first: %s" % (len(a), len(b), diff))
    with open(os.path.join(_work, "clean.st"), "rb") as f, open(os.path.join(_work, "faulty.st"), "rb") as g:
        if f.read() != g.read():
            fail("final weights differ from the run without faults")
    return len(b)


def check_process_restart(case, text, survivors):
    """The end of a process-restart test that recovered: a stopped (SIGSTOP) rank is named by its missing heartbeats in
    rank 0's stderr `text`, the run is bitwise the clean one, and the survivors (rank -> PID) are printed unchanged."""
    if case == "stop" and "sent no heartbeat" not in text:
        fail("rank 0 does not say that rank 1 sent no heartbeat")
    steps = check_bitwise()
    print("OK: %d steps, losses and weights bitwise equal to the run without faults; survivors %s unchanged" %
          (steps, sorted(survivors.values())))


def check_escalation(code, text, words):
    """Rank 0 ended past fault.max_restarts: a non-zero exit `code`, each of `words` in its stderr `text`, and no
    weights file (faulty.st) written; fails the test when not."""
    if code == 0:
        fail("rank 0 exited 0 after more restarts than fault.max_restarts")
    for w in words:
        if w not in text:
            fail("the escalation does not say '%s'" % w)
    if os.path.exists(os.path.join(_work, "faulty.st")):
        fail("a failed run wrote its weights")
