#!/usr/bin/python3
"""Checks that `troupe train` reproduces the PyTorch reference (gpt_ref.py) step by step.

    parity.py --troupe build/cli/troupe --workdir /tmp/parity --set model.n_layer=2 ... [--steps 20]

1. troupe exports its initial weights:   troupe train --set ... --set train.steps=0 --save init.safetensors
                                           (without the schedule keys, which a 0-step run rejects)
2. troupe trains from them:              troupe train --set ... --steps N --init-from init.safetensors
                                           --dump-losses troupe.jsonl --save troupe_final.safetensors
3. torch trains from the same weights:   gpt_ref.py --weights init.safetensors --set ... --steps N
                                           --out torch.jsonl --save torch_final.safetensors
4. Per-step losses must agree: step 0 within --step0-tol (relative), every step within --tol; the
   learning rates too (--lr-tol). The final weights are compared for information only.

Exit status: 0 parity, 1 mismatch or a failed run (with the reason), 77 torch not importable (CTest skip).
data.order=sequential is added when no data.order is given.
"""
import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys

SKIP = 77
SCHEDULE_KEYS = ("train.lr_schedule", "train.warmup_steps", "train.min_lr")
HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, what, timeout):
    """Runs cmd; on failure prints the command and the end of its output and exits 1."""
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"parity: FAIL: {what} did not finish within {timeout}s")
    except OSError as e:
        sys.exit(f"parity: FAIL: {what}: cannot run {cmd[0]}: {e}")
    if proc.returncode != 0:
        tail = proc.stdout.decode("utf-8", "replace")[-3000:]
        print(tail, file=sys.stderr)
        sys.exit(f"parity: FAIL: {what} exited with status {proc.returncode} (output above)")
    return proc.stdout.decode("utf-8", "replace")


def read_losses(path, what, first_step):
    """{step from 0: (loss, lr)} from a JSON-lines file whose steps count from first_step (troupe's from 1,
    the reference's from 0)."""
    rows = {}
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    rows[int(obj["step"]) - first_step] = (float(obj["loss"]), float(obj["lr"]))
                except (ValueError, KeyError, TypeError) as e:
                    sys.exit(f"parity: FAIL: {what} {path}:{n}: not a {{step, loss, lr}} object ({e}): {line.strip()}")
    except OSError as e:
        sys.exit(f"parity: FAIL: {what}: cannot read {path}: {e}")
    return rows


def rel_diff(a, b):
    """|a - b| relative to the reference value b (absolute when b is 0)."""
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def compare_losses(ours, ref, steps, step0_tol, tol, lr_tol):
    """Prints the per-step table; returns a list of failure messages (empty: parity)."""
    failures = []
    for name, rows in (("troupe", ours), ("torch", ref)):
        missing = [s for s in range(steps) if s not in rows]
        if missing:
            failures.append(f"{name} wrote no loss for steps {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    print(f"{'step':>4}  {'troupe loss':>14}  {'torch loss':>14}  {'rel diff':>10}  {'troupe lr':>12}  {'torch lr':>12}")
    worst = (-1.0, None)
    for s in range(steps):
        if s not in ours or s not in ref:
            continue
        (a, lr_a), (b, lr_b) = ours[s], ref[s]
        d = rel_diff(a, b)
        limit = step0_tol if s == 0 else tol
        marks = []
        if not d <= limit:  # also catches NaN
            marks.append(f"loss > {limit:g}")
            failures.append(f"step {s}: troupe loss {a!r} vs torch {b!r}, relative difference {d:.3g} > {limit:g}")
        if not rel_diff(lr_a, lr_b) <= lr_tol:
            marks.append("lr")
            failures.append(f"step {s}: troupe lr {lr_a!r} vs torch {lr_b!r} (schedule differs)")
        if d > worst[0] or d != d:
            worst = (d, s)
        print(f"{s:>4}  {a:>14.8f}  {b:>14.8f}  {d:>10.2e}  {lr_a:>12.6g}  {lr_b:>12.6g}"
              + ("  <-- " + ", ".join(marks) if marks else ""))
    if worst[1] is not None:
        print(f"largest relative loss difference: {worst[0]:.3g} at step {worst[1]}")
    return failures


def compare_weights(ours_path, ref_path):
    """Informational: per tensor max|troupe - torch| / max|torch|; prints the worst few."""
    from gpt_ref import read_safetensors
    import numpy as np
    ours, ref = read_safetensors(ours_path), read_safetensors(ref_path)
    if set(ours) != set(ref):
        print(f"final weights: names differ: only troupe {sorted(set(ours) - set(ref))}, "
              f"only torch {sorted(set(ref) - set(ours))}")
        return
    rows = []
    for name in sorted(ref):
        if ours[name].shape != ref[name].shape:
            print(f"final weights: {name}: troupe shape {list(ours[name].shape)}, torch {list(ref[name].shape)}")
            return
        scale = float(np.max(np.abs(ref[name]))) or 1.0
        rows.append((float(np.max(np.abs(ours[name].astype(np.float64) - ref[name]))) / scale, name))
    rows.sort(reverse=True)
    print(f"final weights (informational): max relative difference {rows[0][0]:.3g} in {rows[0][1]}")
    for d, name in rows[1:4]:
        print(f"    {d:.3g}  {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--troupe", required=True, help="the troupe CLI binary")
    ap.add_argument("--workdir", required=True, help="directory for weights and loss files (created)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="config key for both sides (repeatable)")
    ap.add_argument("--steps", type=int, default=20, help="training steps to compare (default 20)")
    ap.add_argument("--step0-tol", type=float, default=1e-5, help="relative tolerance at step 0 (default 1e-5)")
    ap.add_argument("--tol", type=float, default=1e-3, help="relative tolerance at every step (default 1e-3)")
    ap.add_argument("--lr-tol", type=float, default=1e-6, help="relative tolerance on the lr (default 1e-6)")
    ap.add_argument("--no-weights", action="store_true", help="skip the final-weight comparison")
    ap.add_argument("--timeout", type=int, default=300, help="seconds allowed to each run (default 300)")
    ap.add_argument("--ref-bf16", choices=("autocast", "operands"), default="autocast",
                    help="with train.precision=bf16: the reference's torch.autocast, or troupe's arithmetic emulated "
                         "(gpt_ref.py --bf16)")
    args = ap.parse_args()

    # gpt_ref.py needs torch; without it this check cannot run. (find_spec: importing torch costs a second.)
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("numpy") is None:
        print(f"parity: SKIP: torch or numpy is not importable by {sys.executable}")
        return SKIP
    sys.path.insert(0, HERE)

    sets = list(args.sets)
    if not any(s.split("=", 1)[0].strip() == "data.order" for s in sets):
        sets.append("data.order=sequential")
    set_args = [a for s in sets for a in ("--set", s)]
    os.makedirs(args.workdir, exist_ok=True)
    path = {k: os.path.join(args.workdir, v) for k, v in dict(
        init="init.safetensors", troupe_losses="troupe.jsonl", torch_losses="torch.jsonl",
        troupe_final="troupe_final.safetensors", torch_final="torch_final.safetensors").items()}
    for p in path.values():
        if os.path.exists(p):
            os.remove(p)

    # The schedule keys do not touch the initial weights, and a warmup longer than 0 steps is invalid.
    export_args = [a for s in sets if s.split("=", 1)[0].strip() not in SCHEDULE_KEYS for a in ("--set", s)]
    run([args.troupe, "train", *export_args, "--set", "train.steps=0", "--save", path["init"]],
        "troupe (exporting initial weights)", args.timeout)
    if not os.path.isfile(path["init"]):
        sys.exit(f"parity: FAIL: troupe exited 0 but wrote no {path['init']}")
    save_troupe = [] if args.no_weights else ["--save", path["troupe_final"]]
    save_torch = [] if args.no_weights else ["--save", path["torch_final"]]
    run([args.troupe, "train", *set_args, "--steps", str(args.steps), "--init-from", path["init"],
         "--dump-losses", path["troupe_losses"], *save_troupe], "troupe (training)", args.timeout)
    run([sys.executable, os.path.join(HERE, "gpt_ref.py"), "--weights", path["init"], *set_args,
         "--steps", str(args.steps), "--out", path["torch_losses"], "--quiet", "--bf16", args.ref_bf16, *save_torch],
        "gpt_ref.py (torch training)", args.timeout)

    print(f"\nparity: {' '.join(sets)}, {args.steps} steps")
    failures = compare_losses(read_losses(path["troupe_losses"], "troupe", 1),
                              read_losses(path["torch_losses"], "torch", 0),
                              args.steps, args.step0_tol, args.tol, args.lr_tol)
    if not args.no_weights:
        if os.path.isfile(path["troupe_final"]) and os.path.isfile(path["torch_final"]):
            compare_weights(path["troupe_final"], path["torch_final"])
        else:
            print("final weights: not compared (a run wrote no --save file)")
    if failures:
        print(f"\nparity: FAIL: troupe differs from the torch reference ({len(failures)} problems):")
        for f in failures[:20]:
            print("  " + f)
        print(f"(files in {args.workdir}; rerun gpt_ref.py with --float64 to see which side drifts)")
        return 1
    print(f"\nparity: OK: {args.steps} steps, step 0 within {args.step0_tol:g}, all within {args.tol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
