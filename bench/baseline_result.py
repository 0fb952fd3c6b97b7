"""Owns running a PyTorch baseline script of ../shared/baselines and reading the figure from its RESULT line.

The script runs in its own directory (it imports its neighbours) under the interpreter given, with
OMP_WAIT_POLICY=PASSIVE, so that its idle threads yield the cores as troupe's do. Shared by bench_ddp.py,
bench_pipeline_gpt.py and bench_tp.py.
"""
import os
import re
import subprocess
import sys


def baseline_result(bench, python, script, args, pattern):
    """Runs `python script ARGS`; the number that the first group of `pattern` finds in its output. Output
    without it ends the benchmark `bench` with that output."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run([python, script] + [str(a) for a in args], check=True, capture_output=True, text=True,
                         env=env, cwd=os.path.dirname(script)).stdout
    m = re.search(pattern, out)
    if not m:
        sys.exit(f"{bench}: no RESULT line from {os.path.basename(script)}:\n" + out)
    return float(m.group(1))
