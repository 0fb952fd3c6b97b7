#!/usr/bin/python3
"""PyTorch's GPT training step at any shape, in one of three modes: the peer bench_train.py runs beside troupe.

The GPT, corpus, batches and AdamW of ../shared/baselines/train_gpt.py (its models.py: pre-LN, GELU MLP 4x,
learned positions; lr 1e-3, betas (0.9, 0.95), weight decay 0.1), with the shape given by the flags
(train_gpt.py fixes width, depth and heads). Modes:
  eager     the model as written (train_gpt.py's step);
  compile   torch.compile(model) with its default backend (inductor, which compiles C++ for the CPU;
            PyTorch 2.x only); the compilation happens in the warm-up steps, which are not timed;
  autocast  forward and loss under torch.autocast(device_type="cpu", dtype=torch.bfloat16), backward and
            update outside it (f32 master weights and optimizer state): PyTorch's bf16 mixed precision.
OMP_WAIT_POLICY is the caller's (bench_train.py runs ACTIVE and PASSIVE). Prints
    RESULT gpt_peer tokens_per_s median=N loss=L
the median step rate over the steps after --warmup.

Run: OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/torch_gpt_peer.py --threads 2 --steps 30 --mode eager
"""
import argparse
import os
import statistics
import sys
import time

BASELINES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "baselines")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30, help="timed steps after the warm-up")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--mode", choices=("eager", "compile", "autocast"), default="eager")
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--baselines", default=BASELINES, help="directory of the peer's models.py")
    a = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))
    sys.path.insert(0, a.baselines)
    import torch
    from models import corpus_tensors, get_batch, gpt_loss, make_adamw, make_gpt

    torch.set_num_threads(a.threads)
    train, _, _, _, _ = corpus_tensors()
    torch.manual_seed(1234)
    model = make_gpt(vocab=a.vocab, d=a.width, layers=a.layers, heads=a.heads, seq=a.block)
    opt = make_adamw(model.parameters())
    if a.mode == "compile":
        if not hasattr(torch, "compile"):
            sys.exit(f"torch_gpt_peer: torch {torch.__version__} has no torch.compile (PyTorch 2.x has)")
        model = torch.compile(model)
    g = torch.Generator().manual_seed(1235)
    times = []
    for _ in range(a.warmup + a.steps):
        x, y = get_batch(train, a.batch, a.block, g)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if a.mode == "autocast":
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                loss = gpt_loss(model(x), y)
            loss.float().backward()
        else:
            loss = gpt_loss(model(x), y)
            loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    rate = a.batch * a.block / statistics.median(times[a.warmup:])
    print(f"RESULT gpt_peer tokens_per_s median={rate:.0f} loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
