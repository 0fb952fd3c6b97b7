#!/usr/bin/env python3
"""Single-device residual-CNN training throughput: troupe beside every PyTorch found, same shapes, same run.

Shapes: Fashion-MNIST images 1x28x28, model.kind = cnn with --channels (default 16,32,64), --blocks
(default 1,1,1) and --stem-stride (default 1), batch --batch (default 128), AdamW lr 1e-3. The PyTorch side is
the same network (tests/torch_ref/cnn_ref.py) in training mode, fed random images of the same shape, under
each PyTorch bench/torch_peers.py finds (Debian's 1.13; the 2.x of scripts/setup-torch2, made first with
--setup-torch2). All sides use --threads threads (default: every core) and run alternately, --rounds times
(bench/peer_bench.py); each figure is a median step rate in images/s after the warm-up. Prints every figure,
the ratio to each PyTorch and to the faster one, and a final JSON line.

Run: python3 bench/bench_cnn.py [--threads N] [--steps 40] [--rounds 2] [--channels 16,32,64] [--blocks 1,1,1]
     [--stem-stride 1] [--batch 128] [--setup-torch2]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_bench import ROOT, compare, print_torch_step_rate, troupe_rate  # noqa: E402


def torch_worker(a):
    """Runs under a PyTorch interpreter: the step rates of a.steps AdamW steps, in images/s."""
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "torch_ref"))
    from cnn_ref import ResNet
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet([int(c) for c in a.channels.split(",")], [int(b) for b in a.blocks.split(",")], a.stem_stride)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(a.batch, 784)
    y = torch.randint(0, 10, (a.batch,))
    print_torch_step_rate(model, opt, x, y, a.steps, a.batch)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--channels", default="16,32,64")
    ap.add_argument("--blocks", default="1,1,1")
    ap.add_argument("--stem-stride", type=int, default=1)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--setup-torch2", action="store_true", help="set up PyTorch 2.x first (scripts/setup-torch2)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        return torch_worker(a)
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_cnn: {a.troupe} not found; build first (scripts/build)")
    sets = ["model.kind=cnn", f"model.cnn_channels={a.channels}", f"model.cnn_blocks={a.blocks}",
            f"model.cnn_stem_stride={a.stem_stride}", f"train.threads={a.threads}", f"train.batch_size={a.batch}",
            "optim.kind=adamw", "optim.lr=1e-3", "train.eval_every=0", "train.eval_batches=1", "data.order=sequential"]
    worker_args = ["--threads", a.threads, "--steps", a.steps, "--batch", a.batch, "--channels", a.channels,
                   "--blocks", a.blocks, "--stem-stride", a.stem_stride]
    shape = {"threads": a.threads, "batch": a.batch, "channels": a.channels, "blocks": a.blocks,
             "stem_stride": a.stem_stride, "steps": a.steps}
    compare("train_cnn", "images/s", a.rounds, lambda: troupe_rate(a.troupe, a.steps, sets, "samples_per_s"),
            worker_args, shape, __file__, a.setup_torch2)


if __name__ == "__main__":
    main()
