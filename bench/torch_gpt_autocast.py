#!/usr/bin/python3
"""PyTorch's bf16 mixed precision on the CPU: the peer of `troupe train --set train.precision=bf16`.

The GPT, data and AdamW of ../shared/baselines/train_gpt.py (its models.py), each step's forward and loss under
torch.autocast(device_type="cpu", dtype=torch.bfloat16), backward and update outside it (f32 master
weights and optimizer state), as PyTorch's AMP recipe has it. Prints
    RESULT gpt_autocast_t{threads} tokens_per_s median=N
the median step rate after 5 warm-up steps. bench_train.py runs it beside troupe's bf16.

Run: OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/torch_gpt_autocast.py --threads 2 --steps 60
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
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--baselines", default=BASELINES, help="directory of the peer's models.py")
    a = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))
    sys.path.insert(0, a.baselines)
    import torch
    from models import corpus_tensors, get_batch, gpt_loss, make_adamw, make_gpt

    torch.set_num_threads(a.threads)
    train, _, _, _, _ = corpus_tensors()
    torch.manual_seed(1234)
    model = make_gpt()
    opt = make_adamw(model.parameters())
    g = torch.Generator().manual_seed(1235)
    batch, seq = 16, 128
    times = []
    for _ in range(a.steps):
        x, y = get_batch(train, batch, seq, g)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            loss = gpt_loss(model(x), y)
        loss.float().backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    rate = batch * seq / statistics.median(times[5:] if len(times) > 10 else times)
    print(f"RESULT gpt_autocast_t{a.threads} tokens_per_s median={rate:.0f} loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
