#!/usr/bin/python3
"""Checks that `troupe sample --temperature 0` decodes token for token as the PyTorch reference (sample_ref.py).

    sample_parity.py --troupe build/troupe --workdir /tmp/sp --steps 300 --tokens 64 --set model.kind=gpt ...

1. troupe trains a small model and saves it:  troupe train --set ... --steps N --save trained.safetensors
   (trained, so that the next byte is a clear choice rather than a near-tie of untrained logits)
2. troupe decodes greedily:                   troupe sample --weights trained.safetensors --temperature 0 ...
3. torch decodes greedily from the same file: sample_ref.py --weights trained.safetensors --set ...
4. The two texts must be equal byte for byte.

Exit status: 0 equal, 1 different or a failed run, 77 torch not importable (CTest skip).
"""
import argparse
import importlib.util
import os
import subprocess
import sys

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, what):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode("utf-8", "replace")[-3000:])
        sys.exit(f"sample_parity: FAIL: {what} exited with status {proc.returncode}")
    sys.stderr.write(proc.stderr.decode("utf-8", "replace")[-300:])
    return proc.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--troupe", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--prompt", default="The ")
    args = ap.parse_args()
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("numpy") is None:
        print(f"sample_parity: SKIP: torch or numpy is not importable by {sys.executable}")
        return SKIP
    os.makedirs(args.workdir, exist_ok=True)
    weights = os.path.join(args.workdir, "trained.safetensors")
    sets = [a for s in args.sets for a in ("--set", s)]
    run([args.troupe, "train", *sets, "--steps", str(args.steps), "--save", weights], "troupe train")
    ours = run([args.troupe, "sample", "--weights", weights, "--prompt", args.prompt, "--tokens", str(args.tokens),
                "--temperature", "0"], "troupe sample")
    ref = run([sys.executable, os.path.join(HERE, "sample_ref.py"), "--weights", weights, *sets,
               "--prompt", args.prompt, "--tokens", str(args.tokens)], "sample_ref.py")
    ref = ref.decode("utf-8").encode("latin-1")
    print("troupe: " + repr(ours))
    print("torch:  " + repr(ref))
    if ours != ref:
        first = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), min(len(ours), len(ref)))
        print(f"sample_parity: FAIL: the texts differ from byte {first} (prompt of {len(args.prompt)} bytes)")
        return 1
    print(f"sample_parity: OK: {args.tokens} greedy tokens equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
