#!/usr/bin/env python3
"""SIGINT and SIGTERM sent to a real `troupe train` process (runtime/signals/stop_signal.h).

usage: stop_signals.py TROUPE CASE
  graceful_sigint    SIGINT: stops at a step boundary, writes a checkpoint of that step, exit 130, no partial
                     file; --resume continues from it
  graceful_sigterm_processes
                     SIGTERM to rank 0 of a 2-process data-parallel run: exit 143, checkpoint written, no rank
                     process left
  second_signal_aborts
                     SIGINT then SIGTERM during a long step: exit 143 at once, without the graceful stop,
                     and no partial file (loss dump, checkpoint temporaries) left
  deepfm_sigint_processes
                     SIGINT to rank 0 of DeepFM with a worker process (sync parameter servers): exit 130 within
                     seconds (not at comm.timeout_s: the worker's next pull waits in a shard), checkpoint
                     written, no worker process left, and --resume continues from it
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SMALL = ["--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
         "--set", "model.block_size=16", "--set", "train.batch_size=8", "--set", "train.threads=1",
         "--set", "train.eval_every=0", "--set", "train.eval_batches=1"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def wait_for(predicate, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    fail("timed out waiting for " + what)


def checkpoints(ck):
    return sorted(d for d in os.listdir(ck) if d.startswith("step-")) if os.path.isdir(ck) else []


def partial_files(root):
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            if ".partial" in name or ".tmp" in name:
                found.append(os.path.join(dirpath, name))
    return found


def start(troupe, work, args):
    out = open(os.path.join(work, "stdout.txt"), "w")
    err = open(os.path.join(work, "stderr.txt"), "w")
    return subprocess.Popen([troupe, "train"] + args, cwd=work, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def stderr_of(work):
    with open(os.path.join(work, "stderr.txt")) as f:
        return f.read()


def graceful(troupe, work, sig, extra, base=SMALL, within=None):
    ck = os.path.join(work, "ck")
    # An absolute checkpoint directory: it also marks this run's rank processes in /proc (unique per test).
    p = start(troupe, work, base + extra + ["--steps", "1000000", "--set", "train.checkpoint_dir=" + ck,
                                             "--set", "train.checkpoint_every=5", "--dump-losses", "losses.jsonl",
                                             "--save", "final.safetensors", "--run-dir", "run"])
    wait_for(lambda: checkpoints(ck) or p.poll() is not None, "the first checkpoint")
    p.send_signal(sig)
    sent = time.time()
    code = p.wait(timeout=120)
    took = time.time() - sent
    err = stderr_of(work)
    print(err, f"exited {took:.3f}s after the signal")
    if within is not None and took > within:
        fail(f"exited {took:.1f}s after the signal, expected within {within}s")
    if code != 128 + sig:
        fail(f"exit code {code}, expected {128 + sig}")
    m = re.search(r"stopped by SIG(INT|TERM) after step (\d+) of 1000000; troupe train --resume " + re.escape(ck) +
                  " continues", err)
    if not m:
        fail("no 'stopped by ... after step N' line on stderr")
    step = int(m.group(2))
    newest = checkpoints(ck)[-1]
    if newest != "step-%06d" % step:
        fail(f"newest checkpoint {newest}, expected the one of step {step}")
    if not os.path.isfile(os.path.join(ck, newest, "manifest.json")):
        fail("the stop's checkpoint has no manifest")
    if partial_files(work):
        fail("partial files left: " + ", ".join(partial_files(work)))
    if os.path.exists(os.path.join(work, "losses.jsonl")) or os.path.exists(os.path.join(work, "final.safetensors")):
        fail("an interrupted run wrote its end-of-run outputs")
    return step


def graceful_sigint(troupe, work):
    step = graceful(troupe, work, signal.SIGINT, [])
    ck = os.path.join(work, "ck")
    r = subprocess.run([troupe, "train", "--resume", ck, "--steps", str(step + 2)], cwd=work,
                       capture_output=True, text=True)
    if r.returncode != 0 or f"resuming from {ck}/step-{step:06d} after step {step}" not in r.stdout:
        fail("resume after the stop failed: " + r.stdout + r.stderr)


def rank_processes(marker):
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"--rank" in cmd and marker.encode() in b" ".join(cmd):
            pids.append(pid)
    return pids


def graceful_sigterm_processes(troupe, work):
    graceful(troupe, work, signal.SIGTERM, ["--set", "parallel.data=2", "--set", "comm.transport=tcp",
                                            "--set", "comm.address=127.0.0.1:0"])
    left = rank_processes(work)  # rank 0 reaps its children before it exits
    if left:
        fail("rank processes still running: " + ", ".join(left))


def deepfm_sigint_processes(troupe, work):
    deepfm = ["--set", "model.kind=deepfm", "--set", "parallel.gradient_exchange=ps", "--set", "ps.shards=2",
              "--set", "model.max_cardinality=10000", "--set", "model.hashed_rows=4096",
              "--set", "data.test_samples=1024", "--set", "train.batch_size=32", "--set", "train.threads=1",
              "--set", "train.eval_every=0", "--set", "comm.timeout_s=60"]
    step = graceful(troupe, work, signal.SIGINT, ["--set", "parallel.data=2", "--set", "comm.transport=tcp",
                                                  "--set", "comm.address=127.0.0.1:0"], base=deepfm, within=20)
    left = rank_processes(work)
    if left:
        fail("worker processes still running: " + ", ".join(left))
    ck = os.path.join(work, "ck")
    r = subprocess.run([troupe, "train", "--resume", ck, "--steps", str(step + 2)], cwd=work,
                       capture_output=True, text=True)
    if r.returncode != 0 or f"resuming from {ck}/step-{step:06d} after step {step}" not in r.stdout:
        fail("resume after the stop failed: " + r.stdout + r.stderr)


def second_signal_aborts(troupe, work):
    ck = os.path.join(work, "ck")
    # Steps of about a second on one thread, so that the second signal lands inside one.
    heavy = ["--set", "model.n_layer=4", "--set", "model.n_embd=256", "--set", "model.n_head=4",
             "--set", "model.block_size=128", "--set", "train.batch_size=32", "--set", "train.threads=1",
             "--set", "train.eval_every=0", "--set", "train.eval_batches=1"]
    p = start(troupe, work, heavy + ["--steps", "1000000", "--set", "train.checkpoint_dir=ck",
                                     "--set", "train.checkpoint_every=1", "--dump-losses", "losses.jsonl",
                                     "--save", "final.safetensors"])
    wait_for(lambda: checkpoints(ck) or p.poll() is not None, "the first checkpoint")
    if not os.path.exists(os.path.join(work, "losses.jsonl.partial")):
        fail("the loss dump is not being written (nothing partial to clean up: the test would prove nothing)")
    p.send_signal(signal.SIGINT)
    time.sleep(0.1)
    sent = time.time()
    p.send_signal(signal.SIGTERM)
    code = p.wait(timeout=60)
    took = time.time() - sent
    err = stderr_of(work)
    print(err, f"exited {took:.3f}s after the second signal")
    if code != 143:
        fail(f"exit code {code}, expected 143 (128 + SIGTERM)")
    if "stopped by" in err:
        fail("the second signal did not abort: the run stopped gracefully")
    if partial_files(work):
        fail("partial files left: " + ", ".join(partial_files(work)))
    for c in checkpoints(ck):
        if not os.path.isfile(os.path.join(ck, c, "manifest.json")):
            fail(f"checkpoint {c} left incomplete under its final name")


def main():
    troupe, case = os.path.abspath(sys.argv[1]), sys.argv[2]
    work = tempfile.mkdtemp(prefix="troupe_signals_")
    try:
        globals()[case](troupe, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS " + case)


if __name__ == "__main__":
    main()
