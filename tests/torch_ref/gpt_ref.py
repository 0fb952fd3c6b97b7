#!/usr/bin/python3
"""An independent PyTorch reference for troupe's single-device training contract.

Trains the same model, on the same data, with the same optimizer and schedule as `troupe train`, starting
from weights troupe exported, and writes one JSON line per step ({"step", "loss", "lr"}), so that
parity.py can hold troupe's per-step losses against torch's. Nothing here is derived from troupe's C++:
it is written from the contract in tests/torch_ref/README.md.

    /usr/bin/python3 gpt_ref.py --weights init.safetensors --set model.n_layer=2 ... --out losses.jsonl

Models: `gpt` (nanoGPT's GPT-2, bias=True, dropout 0, LM head tied to wte) on byte-level text, `mlp`
(Linear/ReLU stack) and `cnn` (the residual network of cnn_ref.py, in training mode) on Fashion-MNIST, `lstm`
(the stacked LSTM of lstm_ref.py) on the same byte-level text as the GPT. Data order: sequential only (shuffled order is troupe's own hash).
"""
import argparse
import copy
import gzip
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- configuration ------------------------------------------------------------------------------------

# Every key a run may set, with troupe's defaults (RunConfig{}). Optimizer hyper-parameters absent here
# take torch.optim's default for the chosen kind.
DEFAULTS = {
    "model.kind": "gpt",
    "model.n_layer": 4,
    "model.n_head": 4,
    "model.n_embd": 256,
    "model.block_size": 128,
    "model.vocab_size": 256,
    "model.mlp_hidden": [1024, 1024],
    "model.cnn_channels": [16, 32, 64],
    "model.cnn_blocks": [1, 1, 1],
    "model.cnn_stem_stride": 1,
    "model.sync_batchnorm": False,
    "parallel.data": 1,
    "data.path": "",
    "data.order": "shuffled",
    "train.batch_size": 16,
    "train.steps": 500,
    "train.seed": 1337,
    "train.grad_clip": 1.0,
    "train.lr_schedule": "constant",
    "train.warmup_steps": 0,
    "train.min_lr": 0.0,
    "optim.kind": "adamw",
    "train.precision": "f32",
}
OPTIM_KEYS = ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum", "dampening", "nesterov", "alpha",
              "centered")
# Keys troupe has that do not change the training trajectory; accepted and ignored.
IGNORED_KEYS = ("train.threads", "train.eval_every", "train.eval_batches", "train.deterministic")

DEFAULT_CORPUS_DIR = "/usr/share/common-licenses"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def parse_value(key, text):
    """Converts the text of `--set key=text` to the key's Python type."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    if key in ("model.mlp_hidden", "model.cnn_channels", "model.cnn_blocks"):
        return [int(w) for w in text.strip("[]").split(",") if w.strip()]
    if key in ("optim.nesterov", "optim.centered", "model.sync_batchnorm"):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{key}={text}: expected true or false")
        return text.lower() in ("true", "1")
    default = DEFAULTS.get(key)
    if isinstance(default, str):
        return text
    if isinstance(default, int) and not isinstance(default, bool):
        return int(text)
    return float(text)  # float keys and every optim.* number


def make_config(sets, steps=None):
    """Builds the effective configuration from `key=value` strings over DEFAULTS."""
    config = dict(DEFAULTS)
    for item in sets:
        if "=" not in item:
            raise SystemExit(f"gpt_ref: --set {item}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        known = key in DEFAULTS or key in IGNORED_KEYS or (key.startswith("optim.") and key[6:] in OPTIM_KEYS)
        if not known:
            raise SystemExit(f"gpt_ref: --set {key}: unknown key")
        if key in IGNORED_KEYS:
            continue
        config[key] = parse_value(key, text)
    if steps is not None:
        config["train.steps"] = steps
    return config


# ---- safetensors (F32 only) -----------------------------------------------------------------------------


def read_safetensors(path):
    """Returns {name: float32 numpy array} from a safetensors file (u64 LE header length, JSON, data)."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    data = blob[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}; only F32 is supported")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        array = np.frombuffer(data[begin:end], dtype="<f4")
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name}: {array.size} values for shape {list(shape)}")
        tensors[name] = array.reshape(shape).astype(np.float32)
    return tensors


def write_safetensors(path, tensors):
    """Writes {name: array} as F32 safetensors, tensors in name order, header padded to 8 bytes."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(tensors[name])),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


# ---- models ---------------------------------------------------------------------------------------------

# How train.precision=bf16 runs here (--bf16): "autocast" is torch.autocast(device_type="cpu",
# dtype=torch.bfloat16) around the forward, the recipe troupe follows; "operands" emulates troupe's arithmetic
# exactly: the Linear layers' and the LM head's products take operands rounded to bf16 (forward and backward)
# and sum in f32, everything else stays f32 (autocast also runs attention's products in bf16 and keeps
# outputs in bf16).
BF16_OPERANDS = False


def to_bf16(t):
    """t rounded to bf16 (to nearest, ties to even), in t's dtype."""
    return t.to(torch.bfloat16).to(t.dtype)


class Bf16OperandProduct(torch.autograd.Function):
    """x @ w^T with both operands rounded to bf16 and the products summed in f32; backward likewise
    (dx = bf16(dy) @ bf16(w), dw = bf16(dy)^T @ bf16(x))."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return to_bf16(x) @ to_bf16(w).t()

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        d = to_bf16(dy)
        dx = d @ to_bf16(w)
        dw = d.reshape(-1, d.shape[-1]).t() @ to_bf16(x).reshape(-1, x.shape[-1])
        return dx, dw


def product_wt(x, w):
    """x @ w^T: f32, or with bf16 operands under BF16_OPERANDS."""
    return Bf16OperandProduct.apply(x, w) if BF16_OPERANDS else x @ w.t()


class Linear(nn.Linear):
    def forward(self, x):
        if not BF16_OPERANDS:
            return super().forward(x)
        y = product_wt(x, self.weight)
        return y + self.bias if self.bias is not None else y



class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        assert n_embd % n_head == 0, "model.n_head must divide model.n_embd"
        self.n_head = n_head
        self.c_attn = Linear(n_embd, 3 * n_embd)  # q, k, v in that order
        self.c_proj = Linear(n_embd, n_embd)
        mask = torch.tril(torch.ones(block_size, block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, block_size, block_size), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)                       # each [B, T, C]
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)               # [B, nh, T, hs]
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))          # [B, nh, T, T]
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v                                                     # [B, nh, T, hs]
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = Linear(n_embd, 4 * n_embd)
        self.c_proj = Linear(4 * n_embd, n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=1e-5)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = nn.LayerNorm(n_embd, eps=1e-5)
        self.mlp = MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT-2 with bias and no dropout. The LM head is wte itself, so the parameter names are
    exactly those of troupe's files (no lm_head.weight)."""

    def __init__(self, n_layer, n_head, n_embd, block_size, vocab_size):
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head, block_size) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd, eps=1e-5),
        ))

    def logits(self, idx):
        B, T = idx.shape                                                # idx: [B, T] int64
        pos = torch.arange(T, dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)       # [B, T, C]
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return product_wt(x, self.transformer.wte.weight)               # [B, T, vocab]

    def forward(self, idx, targets):
        B, T = idx.shape                                                # targets: [B, T] int64
        logits = self.logits(idx)
        return F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


class MnistMLP(nn.Module):
    """Linear(784, h1), ReLU, ..., Linear(h_last, 10); parameters layers.{k}.weight/bias."""

    def __init__(self, hidden):
        super().__init__()
        widths = [784] + list(hidden) + [10]
        self.layers = nn.ModuleList([Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])

    def forward(self, x, targets):
        for k, layer in enumerate(self.layers):                         # x: [B, 784] float
            x = layer(x)
            if k + 1 < len(self.layers):
                x = F.relu(x)
        return F.cross_entropy(x, targets)                              # logits [B, 10]


def build_model(config):
    if config["model.kind"] == "gpt":
        return GPT(config["model.n_layer"], config["model.n_head"], config["model.n_embd"],
                   config["model.block_size"], config["model.vocab_size"])
    if config["model.kind"] == "mlp":
        return MnistMLP(config["model.mlp_hidden"])
    if config["model.kind"] == "cnn":
        from cnn_ref import ResNet
        return ResNet(config["model.cnn_channels"], config["model.cnn_blocks"], config["model.cnn_stem_stride"])
    if config["model.kind"] == "lstm":
        from lstm_ref import LstmLM
        return LstmLM(config["model.n_layer"], config["model.n_embd"], config["model.vocab_size"])
    raise SystemExit(f"gpt_ref: model.kind={config['model.kind']}: expected gpt, mlp, cnn or lstm")


def model_state(model):
    """{name: tensor} of everything a weights file holds: parameters and persistent buffers (batch-norm
    running statistics), without num_batches_tracked (troupe keeps no such counter; momentum is fixed)."""
    state = dict(model.named_parameters())
    persistent = model.state_dict(keep_vars=True)
    for name, b in model.named_buffers():
        if name in persistent and not name.endswith("num_batches_tracked"):
            state[name] = b
    return state


def load_weights(model, tensors):
    """Copies every tensor into the parameter or buffer of the same name; names and shapes must match exactly."""
    params = model_state(model)
    missing = sorted(set(params) - set(tensors))
    extra = sorted(set(tensors) - set(params))
    if missing or extra:
        raise SystemExit(f"gpt_ref: weights do not match the model: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for name, p in params.items():
            if tuple(tensors[name].shape) != tuple(p.shape):
                raise SystemExit(f"gpt_ref: {name}: file shape {list(tensors[name].shape)}, model {list(p.shape)}")
            p.copy_(torch.from_numpy(tensors[name]).to(p.dtype))


# ---- data -----------------------------------------------------------------------------------------------


def load_text(path):
    """The training corpus: data.path's bytes, or every regular non-symlink file of /usr/share/common-licenses
    sorted by name bytewise, concatenated."""
    if path:
        with open(path, "rb") as f:
            return f.read()
    names = sorted(os.listdir(DEFAULT_CORPUS_DIR), key=os.fsencode)
    parts = []
    for name in names:
        full = os.path.join(DEFAULT_CORPUS_DIR, name)
        if os.path.isfile(full) and not os.path.islink(full):
            with open(full, "rb") as f:
                parts.append(f.read())
    return b"".join(parts)


class TextBatches:
    """Sequential byte batches: sample b of step i starts at ((i*B + b)*T) mod (N_train - T - 1)."""

    def __init__(self, data, block_size, batch_size):
        n_train = len(data) * 9 // 10
        self.train = np.frombuffer(data[:n_train], dtype=np.uint8)
        self.T, self.B = block_size, batch_size
        self.range = n_train - block_size - 1
        if self.range <= 0:
            raise SystemExit(f"gpt_ref: corpus of {len(data)} bytes is too short for block_size {block_size}")

    def batch(self, step):
        starts = [((step * self.B + b) * self.T) % self.range for b in range(self.B)]
        x = np.stack([self.train[s:s + self.T] for s in starts]).astype(np.int64)          # [B, T]
        y = np.stack([self.train[s + 1:s + 1 + self.T] for s in starts]).astype(np.int64)  # [B, T]
        return torch.from_numpy(x), torch.from_numpy(y)


def read_idx_gz(path, dims):
    """An IDX file of unsigned bytes (magic 0x0000080X, big-endian sizes), gzip-compressed."""
    with gzip.open(path, "rb") as f:
        blob = f.read()
    magic = struct.unpack(">I", blob[:4])[0]
    if magic != 0x800 + dims:
        raise SystemExit(f"gpt_ref: {path}: not an IDX u8 file with {dims} dimensions")
    shape = struct.unpack(">" + "I" * dims, blob[4:4 + 4 * dims])
    return np.frombuffer(blob[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


class MnistBatches:
    """Sequential Fashion-MNIST batches: sample b of step i is training example (i*B + b) mod N."""

    def __init__(self, directory, batch_size):
        directory = directory or FASHION_MNIST_DIR
        images = read_idx_gz(os.path.join(directory, "train-images-idx3-ubyte.gz"), 3)
        self.labels = read_idx_gz(os.path.join(directory, "train-labels-idx1-ubyte.gz"), 1).astype(np.int64)
        self.images = images.reshape(images.shape[0], -1)                                  # [N, 784] u8
        self.B = batch_size

    def batch(self, step):
        n = len(self.labels)
        rows = [(step * self.B + b) % n for b in range(self.B)]
        x = (self.images[rows] / 255.0).astype(np.float32)                                # [B, 784]
        return torch.from_numpy(x), torch.from_numpy(self.labels[rows])


# ---- optimizer and schedule -----------------------------------------------------------------------------


def make_optimizer(params, config):
    """torch.optim with one parameter group holding every parameter; unset keys keep torch's defaults."""
    kind = config["optim.kind"]
    opts = {}
    for key in OPTIM_KEYS:
        if "optim." + key in config:
            opts[key] = config["optim." + key]
    if "beta1" in opts or "beta2" in opts:
        opts["betas"] = (opts.pop("beta1", 0.9), opts.pop("beta2", 0.999))
    allowed = {
        "sgd": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
        "adam": ("lr", "betas", "eps", "weight_decay"),
        "adamw": ("lr", "betas", "eps", "weight_decay"),
        "rmsprop": ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"),
    }
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "rmsprop": torch.optim.RMSprop}
    if kind not in classes:
        raise SystemExit(f"gpt_ref: optim.kind={kind}: expected one of {sorted(classes)}")
    kwargs = {k: v for k, v in opts.items() if k in allowed[kind]}
    if kind == "sgd" and "lr" not in kwargs:
        kwargs["lr"] = 1e-3  # torch 1.13 SGD has no default lr; troupe's default is 1e-3
    optimizer = classes[kind](params, foreach=False, **kwargs)
    return optimizer, optimizer.param_groups[0]["lr"]


def lr_at(step, base, config):
    """Linear warmup over W steps, then constant or cosine decay to min_lr by step S."""
    warmup, total = config["train.warmup_steps"], config["train.steps"]
    if step < warmup:
        return base * (step + 1) / warmup
    if config["train.lr_schedule"] == "constant":
        return base
    progress = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
    min_lr = config["train.min_lr"]
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base - min_lr)


# ---- training -------------------------------------------------------------------------------------------


def train(config, tensors, out_path, save_path=None, dtype=torch.float32, log=sys.stderr, bf16="autocast"):
    """Runs train.steps steps, writing {"step", "loss", "lr"} per step to out_path; returns the losses.
    bf16: how train.precision=bf16 runs ("autocast" or "operands", see BF16_OPERANDS)."""
    global BF16_OPERANDS
    if config["train.precision"] not in ("f32", "bf16"):
        raise SystemExit(f"gpt_ref: train.precision={config['train.precision']}: expected f32 or bf16")
    use_bf16 = config["train.precision"] == "bf16"
    BF16_OPERANDS = use_bf16 and bf16 == "operands"
    autocast = use_bf16 and bf16 == "autocast"
    if config["data.order"] != "sequential":
        raise SystemExit("gpt_ref: only data.order=sequential is reproducible here; pass --set data.order=sequential")
    model = build_model(config).to(dtype)
    load_weights(model, tensors)
    if config["model.kind"] in ("gpt", "lstm"):
        batches = TextBatches(load_text(config["data.path"]), config["model.block_size"], config["train.batch_size"])
    else:
        batches = MnistBatches(config["data.path"], config["train.batch_size"])
    params = list(model.parameters())
    optimizer, base_lr = make_optimizer(params, config)
    clip = config["train.grad_clip"]
    # parallel.data = D: PyTorch DDP over D ranks, simulated in one process. Each rank is a copy of the
    # module run on its contiguous 1/D of the batch (batch norm: that share's statistics, and the rank's own
    # running statistics; DDP broadcasts rank 0's buffers before each forward, which changes nothing
    # observable: training forwards use batch statistics, and rank 0's are the ones saved). Gradients are
    # averaged over the ranks; every rank applies the same update. With model.sync_batchnorm (SyncBatchNorm)
    # the statistics are the whole batch's, which is one device: no split. Other models: one device too
    # (their data parallelism only averages gradients).
    ranks = config["parallel.data"]
    if ranks > 1 and (config["model.kind"] != "cnn" or config["model.sync_batchnorm"]):
        ranks = 1
    replicas = [model] + [copy.deepcopy(model) for _ in range(ranks - 1)]

    losses = []
    with open(out_path, "w") as out:
        for step in range(config["train.steps"]):
            x, y = batches.batch(step)
            if x.is_floating_point():
                x = x.to(dtype)
            optimizer.zero_grad(set_to_none=True)                # zero grad
            if ranks == 1:
                with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=autocast):
                    loss = model(x, y)                           # forward
                loss = loss.float()
                loss.backward()                                  # backward
            else:
                share = x.shape[0] // ranks
                rank_losses = []
                for r, m in enumerate(replicas):
                    m.zero_grad(set_to_none=True)
                    with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=autocast):
                        rank_loss = m(x[r * share:(r + 1) * share], y[r * share:(r + 1) * share])
                    rank_losses.append(rank_loss.float())
                    rank_losses[-1].backward()
                for p, *others in zip(params, *[list(m.parameters()) for m in replicas[1:]]):
                    p.grad = (p.grad + sum(o.grad for o in others)) / ranks  # DDP's allreduce average
                loss = sum(l.detach() for l in rank_losses) / ranks
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            lr = lr_at(step, base_lr, config)
            optimizer.param_groups[0]["lr"] = lr
            optimizer.step()                                     # update
            with torch.no_grad():
                for m in replicas[1:]:                           # every rank holds the same parameters
                    for p, q in zip(params, m.parameters()):
                        q.copy_(p)
            losses.append(loss.item())
            out.write(json.dumps({"step": step, "loss": loss.item(), "lr": lr}) + "\n")
            print(f"step {step:4d} | loss {loss.item():.6f} | lr {lr:.6g}", file=log)
    if save_path:
        write_safetensors(save_path, {n: p.detach().float().numpy() for n, p in model_state(model).items()})
    return losses


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="initial weights (safetensors, F32), e.g. from troupe --save")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="config key, as for troupe train (repeatable)")
    ap.add_argument("--steps", type=int, help="shorthand for --set train.steps=N")
    ap.add_argument("--out", required=True, help="write one JSON line per step: step, loss, lr")
    ap.add_argument("--save", help="write the final weights (safetensors)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: reproducible)")
    ap.add_argument("--float64", action="store_true", help="compute in float64 (diagnostics: which side drifts)")
    ap.add_argument("--quiet", action="store_true", help="no per-step log on stderr")
    ap.add_argument("--bf16", choices=("autocast", "operands"), default="autocast",
                    help="how train.precision=bf16 runs: torch.autocast (default), or troupe's arithmetic emulated")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = make_config(args.sets, args.steps)
    tensors = read_safetensors(args.weights)
    dtype = torch.float64 if args.float64 else torch.float32
    log = open(os.devnull, "w") if args.quiet else sys.stderr
    train(config, tensors, args.out, args.save, dtype, log, args.bf16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
