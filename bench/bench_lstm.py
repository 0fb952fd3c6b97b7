#!/usr/bin/env python3
"""Single-device stacked-LSTM language-model training throughput: troupe beside every PyTorch found, same shapes.

Shapes: model.kind = lstm with --layers (default 2) LSTM layers of --hidden (default 64) over bytes
(vocabulary 256), --block (default 64) steps of truncated back-propagation, batch --batch (default 16),
AdamW lr 1e-3. The PyTorch side is the same network (tests/torch_ref/lstm_ref.py: nn.Embedding, nn.LSTM,
nn.Linear) fed random bytes of the same shape, under each PyTorch bench/torch_peers.py finds (Debian's 1.13;
the 2.x of scripts/setup-torch2, made first with --setup-torch2); troupe trains on its corpus. All sides use
--threads threads (default: every core) and run alternately, --rounds times (bench/peer_bench.py); each
figure is a median step rate in tokens/s after the warm-up. Prints every figure, the ratio to each PyTorch
and to the faster one, and a final JSON line.

Run: python3 bench/bench_lstm.py [--threads N] [--steps 40] [--rounds 2] [--layers 2] [--hidden 64]
     [--block 64] [--batch 16] [--setup-torch2]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_bench import ROOT, compare, print_torch_step_rate, troupe_rate  # noqa: E402


def torch_worker(a):
    """Runs under a PyTorch interpreter: the step rates of a.steps AdamW steps, in tokens/s."""
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "torch_ref"))
    from lstm_ref import LstmLM
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = LstmLM(a.layers, a.hidden, 256)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (a.batch, a.block))
    y = torch.randint(0, 256, (a.batch, a.block))
    print_torch_step_rate(model, opt, x, y, a.steps, a.batch * a.block)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--setup-torch2", action="store_true", help="set up PyTorch 2.x first (scripts/setup-torch2)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        return torch_worker(a)
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_lstm: {a.troupe} not found; build first (scripts/build)")
    sets = ["model.kind=lstm", f"model.n_layer={a.layers}", f"model.n_embd={a.hidden}", f"model.block_size={a.block}",
            f"train.threads={a.threads}", f"train.batch_size={a.batch}", "optim.kind=adamw", "optim.lr=1e-3",
            "train.eval_every=0", "train.eval_batches=1", "data.order=sequential"]
    worker_args = ["--threads", a.threads, "--steps", a.steps, "--batch", a.batch, "--layers", a.layers,
                   "--hidden", a.hidden, "--block", a.block]
    shape = {"threads": a.threads, "batch": a.batch, "block": a.block, "layers": a.layers, "hidden": a.hidden,
             "steps": a.steps}
    compare("train_lstm", "tokens/s", a.rounds, lambda: troupe_rate(a.troupe, a.steps, sets, "tokens_per_s"),
            worker_args, shape, __file__, a.setup_torch2)


if __name__ == "__main__":
    main()
