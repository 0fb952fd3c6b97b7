"""Which PyTorch interpreters the benchmarks run beside troupe: Debian's 1.13 and a 2.x from PyPI.

Every benchmark that prints a ratio against PyTorch compares with each interpreter found here and names the
faster one. The 2.x environment is made by scripts/setup-torch2 (a virtual environment from PyPI); a
benchmark calls ensure_torch2() to set it up when asked to, or finds it already there.
"""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBIAN_PYTHON = "/usr/bin/python3"


def torch2_venv():
    return os.environ.get("TROUPE_TORCH2_VENV", os.path.expanduser("~/.cache/troupe/torch2-venv"))


def torch_version(python):
    """torch.__version__ under this interpreter, or None when it has no torch."""
    if not os.path.exists(python):
        return None
    out = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_torch2():
    """Sets up the PyTorch 2.x virtual environment (scripts/setup-torch2) and returns its python."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "setup-torch2")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def peers(setup_torch2=False):
    """[(label, python)] for each PyTorch found: 'torch 1.13.1' (Debian) and 'torch 2.x' (the venv)."""
    found = []
    v = torch_version(DEBIAN_PYTHON)
    if v:
        found.append((f"torch {v}", DEBIAN_PYTHON))
    python2 = ensure_torch2() if setup_torch2 else os.path.join(torch2_venv(), "bin", "python")
    v2 = torch_version(python2)
    if v2:
        found.append((f"torch {v2}", python2))
    return found
