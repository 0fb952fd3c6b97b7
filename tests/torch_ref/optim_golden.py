#!/usr/bin/python3
"""Generates the torch.optim golden numbers pasted into tests/test_optim.cpp.

Run with Debian's torch (1.13) or any torch 2.x:
    /usr/bin/python3 tests/torch_ref/optim_golden.py > /tmp/golden.inc
then replace the block between "BEGIN GOLDEN" and "END GOLDEN" in tests/test_optim.cpp with the output.

Every optimizer runs as torch.optim.X with one parameter group holding both parameters, the
single-tensor (foreach=False) code path, float32 tensors. The gradients are fixed literals per step (so
both sides start each step from bit-identical gradients) and the learning rate changes every step (as
a schedule would drive it), set through param_groups[0]["lr"] before each step.
"""
import math

import torch

STEPS = 5
INIT_W = [0.5, -1.25, 2.0, -0.75, 1.5, 0.25]  # "w", shape [2, 3]
INIT_B = [0.1, -0.2, 0.3, -0.4]  # "b", shape [4]
# One row per step: the 6 gradients of w, then the 4 of b.
GRADS = [
    [0.3, -0.6, 1.2, 0.05, -2.0, 0.7, 0.0, 0.4, -0.9, 1.5],
    [0.25, -0.1, 0.8, -0.3, -1.5, 0.9, 0.2, 0.35, -1.1, 1.0],
    [-0.4, -0.5, 1.0, 0.15, -1.0, 0.6, -0.3, 0.5, -0.7, 1.25],
    [0.1, -0.8, 0.6, 0.2, -2.5, 0.4, 0.1, 0.3, -1.3, 0.75],
    [0.35, -0.2, 1.4, -0.1, -0.5, 0.8, 0.25, 0.45, -0.6, 1.1],
]
LR_SCALE = [1.0, 0.5, 2.0, 1.0, 0.25]  # lr at step s = base lr * LR_SCALE[s]

# (case name, optim.kind, hyper-parameters as OptimConfig keys). Keys absent take the kind's default,
# which is torch's default.
CASES = [
    ("sgd_plain", "sgd", dict(lr=0.1)),
    ("sgd_momentum", "sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd_dampening", "sgd", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("sgd_nesterov", "sgd", dict(lr=0.1, momentum=0.8, nesterov=True)),
    ("sgd_weight_decay", "sgd", dict(lr=0.1, weight_decay=0.2)),
    ("sgd_all", "sgd", dict(lr=0.05, momentum=0.7, weight_decay=0.1, nesterov=True)),
    ("adam", "adam", dict(lr=0.01)),
    ("adam_weight_decay", "adam", dict(lr=0.02, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.3)),
    ("adamw", "adamw", dict(lr=0.01)),
    ("adamw_custom", "adamw", dict(lr=0.05, beta1=0.85, beta2=0.9, eps=1e-4, weight_decay=0.5)),
    ("rmsprop_plain", "rmsprop", dict(lr=0.01)),
    ("rmsprop_momentum", "rmsprop", dict(lr=0.01, momentum=0.9)),
    ("rmsprop_centered", "rmsprop", dict(lr=0.01, centered=True, alpha=0.9)),
    ("rmsprop_weight_decay", "rmsprop", dict(lr=0.01, weight_decay=0.2, alpha=0.95, eps=1e-4)),
    ("rmsprop_all", "rmsprop", dict(lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.5, centered=True)),
]

STATE_NAMES = {"sgd": ["momentum_buffer"], "adam": ["exp_avg", "exp_avg_sq"], "adamw": ["exp_avg", "exp_avg_sq"],
               "rmsprop": ["square_avg", "momentum_buffer", "grad_avg"]}


def make(kind, params, hp):
    lr = hp["lr"]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=hp.get("momentum", 0.0), dampening=hp.get("dampening", 0.0),
                               weight_decay=hp.get("weight_decay", 0.0), nesterov=hp.get("nesterov", False),
                               foreach=False)
    if kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=(hp.get("beta1", 0.9), hp.get("beta2", 0.999)), eps=hp.get("eps", 1e-8),
                   weight_decay=hp.get("weight_decay", 0.0 if kind == "adam" else 1e-2), foreach=False)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=hp.get("alpha", 0.99), eps=hp.get("eps", 1e-8),
                                   weight_decay=hp.get("weight_decay", 0.0), momentum=hp.get("momentum", 0.0),
                                   centered=hp.get("centered", False), foreach=False)
    raise ValueError(kind)


def f32(x):
    """A float32 value as a C++ literal that reads back to the same float."""
    x = float(x)
    if x == 0.0:
        return "0.0f"
    return "%.9gf" % x if "e" in "%.9g" % x or "." in "%.9g" % x else "%.9g.0f" % x


def floats(values):
    return "{" + ", ".join(f32(v) for v in values) + "}"


def cxx_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(float(v))


def run_case(kind, hp):
    w = torch.tensor(INIT_W, dtype=torch.float32).reshape(2, 3).requires_grad_()
    b = torch.tensor(INIT_B, dtype=torch.float32).requires_grad_()
    opt = make(kind, [w, b], hp)
    after = []
    for s in range(STEPS):
        g = torch.tensor(GRADS[s], dtype=torch.float32)
        w.grad = g[:6].reshape(2, 3).clone()
        b.grad = g[6:].clone()
        opt.param_groups[0]["lr"] = hp["lr"] * LR_SCALE[s]
        opt.step()
        after.append(torch.cat([w.detach().flatten(), b.detach().flatten()]).tolist())
    state = []
    for name in STATE_NAMES[kind]:
        ts = [opt.state[p].get(name) for p in (w, b)]
        if ts[0] is None:
            continue
        state.append((name, torch.cat([t.flatten() for t in ts]).tolist()))
    return after, state


def clip_cases():
    """(max_norm, grads, total norm returned, grads after) for torch.nn.utils.clip_grad_norm_."""
    out = []
    for max_norm, grads in [(1.0, GRADS[0]), (0.5, GRADS[3]), (100.0, GRADS[1]), (1.0, [0.0] * 10)]:
        w = torch.zeros(2, 3, requires_grad=True)
        b = torch.zeros(4, requires_grad=True)
        g = torch.tensor(grads, dtype=torch.float32)
        w.grad = g[:6].reshape(2, 3).clone()
        b.grad = g[6:].clone()
        total = torch.nn.utils.clip_grad_norm_([w, b], max_norm)
        out.append((max_norm, grads, float(total), torch.cat([w.grad.flatten(), b.grad.flatten()]).tolist()))
    return out


def main():
    print("// BEGIN GOLDEN: generated by tests/torch_ref/optim_golden.py with torch %s; do not edit by hand." %
          torch.__version__)
    print("constexpr int kSteps = %d;" % STEPS)
    print("const std::vector<float> kInitW = %s;" % floats(INIT_W))
    print("const std::vector<float> kInitB = %s;" % floats(INIT_B))
    print("const std::vector<std::vector<float>> kGrads = {")
    for row in GRADS:
        print("    %s," % floats(row))
    print("};")
    print("const std::vector<double> kLrScale = {%s};" % ", ".join(repr(x) for x in LR_SCALE))
    print("const std::vector<GoldenCase> kGoldenCases = {")
    for name, kind, hp in CASES:
        after, state = run_case(kind, hp)
        sets = "".join(" c.%s = %s;" % (k, cxx_value(v)) for k, v in hp.items())
        print("    {\"%s\", [] { OptimConfig c; c.kind = \"%s\";%s return c; }()," % (name, kind, sets))
        print("     {")
        for row in after:
            print("         %s," % floats(row))
        print("     },")
        print("     {")
        for sname, values in state:
            print("         {\"%s\", %s}," % (sname, floats(values)))
        print("     }},")
    print("};")
    print("const std::vector<GoldenClip> kGoldenClips = {")
    for max_norm, grads, total, after in clip_cases():
        print("    {%s, %s, %s," % (repr(max_norm), floats(grads), repr(total)))
        print("     %s}," % floats(after))
    print("};")
    print("// END GOLDEN")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
