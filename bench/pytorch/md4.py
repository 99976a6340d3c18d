#!/usr/bin/env python3
"""PyTorch baseline of mdm-gpu's MD4 training step (issue 9; md4.md §2.3, §6.1, §6.3).

The same network, initialisation rules, masking, loss and optimiser as the Go engine
(engine/model, engine/train), written the way a PyTorch user would write it:

  network    MD4 text transformer: token embedding (V+1 rows), sinusoidal time features of
             1000·t → Dense(4Dc) → swish → Dense(Dc) → c; per block adaLN-Zero
             (Dense(6D)(sigmoid(c)) → shift/scale/gate for attention and MLP), LayerNorm
             without affine (eps 1e-5), RoPE on adjacent channel pairs (θ = 10000),
             bidirectional attention, sigmoid-gated GLU MLP without biases; final adaLN
             (shift, scale) and an untied head over the V real tokens, evaluated on the
             masked rows only. Module names equal mdm-gpu's canonical parameter names, so
             state_dict() keys are the names of our safetensors checkpoints.
  init       md4.md §6.1: LeCun truncated normal for Dense, variance_scaling(2/layers)
             for the MLP, normal(1/D) for the embedding, zeros for adaLN, biases and head.
  loss       one time per sequence, antithetic t_b = (u + b/B) mod 1; the ε-shifted linear
             schedule (ε = 1e-4): mask probability (1−2ε)t + ε and weight
             c(t) = (1−2ε)/((1−2ε)t + ε); loss in bits per token
             Σ_b c(t_b)·Σ_masked CE / (B·L·ln 2) + ε·log2 V.
  optimiser  AdamW as optax.adamw (decoupled weight decay multiplied by the LR, bias
             correction, eps outside the square root) = torch.optim.AdamW; warmup then
             cosine LR with lr(0) = 0; EMA ema += (1−decay)(θ − ema) after every update.

Modes (one JSON object per result on stdout):

  --bench          time training steps on random tokens (CPU: fp32, the thread count of
                   --threads; CUDA: bf16 autocast, SDPA attention, fused AdamW, optional
                   --compile).
  --serve          like --bench, but reads "steps N" lines from stdin and answers each with
                   the N step times, so that a caller can interleave our steps and these on
                   a shared machine ("quit" ends).
  --check DIR      numeric agreement: read DIR/config.json, the training state
                   DIR/state.safetensors written by mdm-gpu (train.SaveState) and the batch
                   DIR/batch.safetensors (x0, the mask x_t drawn by Go, t); run one training
                   step in float32; write DIR/torch_state.safetensors (the state after the
                   step, in mdm-gpu's checkpoint layout), DIR/torch_grads.safetensors
                   ("grad.<name>") and DIR/torch.json (loss, masked count, LR, grad norm).
  --kernels        GPU: PyTorch equivalents of our kernels (SDPA attention fwd/bwd, cross-
                   entropy, LayerNorm, AdamW, categorical sampling) and copy bandwidth.

Dependencies: torch (Debian: apt-get install python3-torch libopenblas0-pthread; without
OpenBLAS torch falls back to the reference BLAS and the baseline is a straw man) and numpy.
The safetensors package is used when present; otherwise the format is read and written
here (json + struct), following the specification.
"""

import argparse
import json
import math
import os
import platform
import struct
import sys
import time
import zlib


def _early_threads():
    # Thread pools are sized when torch (and its BLAS) load: set the environment first.
    for i, a in enumerate(sys.argv):
        n = None
        if a == "--threads" and i + 1 < len(sys.argv):
            n = sys.argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
        if n and n != "0":
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[k] = n


_early_threads()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ----------------------------------------------------------------------------------------
# configuration


TINY = dict(name="tiny", vocab=27, seq_len=128, dim=128, layers=4, heads=4, mlp_hidden=352, cond_dim=64,
            batch=32, lr=2e-3, warmup=50, total_steps=300, beta1=0.9, beta2=0.999, adam_eps=1e-8,
            weight_decay=0.03, ema_decay=0.99, sched_eps=1e-4, norm_eps=1e-5, rope_theta=10000.0,
            time_scale=1000.0)
OWT_SMALL = dict(TINY, name="owt-small", vocab=50257, seq_len=1024, dim=768, layers=12, heads=12,
                 mlp_hidden=2048, batch=8, lr=3e-4, warmup=2000, total_steps=1000000, ema_decay=0.9999)
SHAPES = {"tiny": TINY, "owt-small": OWT_SMALL}


def learning_rate(cfg, k):
    """md4.md §6.3: LR·min(1, k/warmup)·½(1 + cos(π·clip((k − warmup)/(total − warmup)))), k from 0."""
    w = min(1.0, k / cfg["warmup"]) if cfg["warmup"] > 0 else 1.0
    if cfg["total_steps"] <= cfg["warmup"]:
        return cfg["lr"] * w
    p = max(0.0, (k - cfg["warmup"]) / (cfg["total_steps"] - cfg["warmup"]))
    p = min(p, 1.0)
    return cfg["lr"] * w * 0.5 * (1 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------------------
# the network


class TimeEmbed(nn.Module):
    def __init__(self, dc):
        super().__init__()
        self.fc1 = nn.Linear(dc, 4 * dc)
        self.fc2 = nn.Linear(4 * dc, dc)


class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)


class MLP(nn.Module):
    def __init__(self, d, hm):
        super().__init__()
        self.w1 = nn.Linear(d, hm, bias=False)
        self.w3 = nn.Linear(d, hm, bias=False)
        self.w2 = nn.Linear(hm, d, bias=False)


class Block(nn.Module):
    def __init__(self, d, hm, dc):
        super().__init__()
        self.adaln = nn.Linear(dc, 6 * d)
        self.attn = Attention(d)
        self.mlp = MLP(d, hm)


class Final(nn.Module):
    def __init__(self, d, dc):
        super().__init__()
        self.adaln = nn.Linear(dc, 2 * d)


class MD4(nn.Module):
    def __init__(self, cfg, sdpa=False):
        super().__init__()
        V, D, Dc = cfg["vocab"], cfg["dim"], cfg["cond_dim"]
        self.cfg = cfg
        self.L, self.D, self.H = cfg["seq_len"], D, cfg["heads"]
        self.dh = D // self.H
        self.eps = cfg["norm_eps"]
        self.sdpa = sdpa and hasattr(F, "scaled_dot_product_attention")
        self.token_embed = nn.Embedding(V + 1, D)
        self.time_embed = TimeEmbed(Dc)
        self.blocks = nn.ModuleList([Block(D, cfg["mlp_hidden"], Dc) for _ in range(cfg["layers"])])
        self.final = Final(D, Dc)
        self.head = nn.Linear(D, V, bias=False)
        # RoPE tables (float64 angles, like the Go reference), [L, Dh/2].
        half = self.dh // 2
        k = torch.arange(half, dtype=torch.float64)
        freq = cfg["rope_theta"] ** (-(2 * k) / self.dh)
        ang = torch.arange(self.L, dtype=torch.float64)[:, None] * freq[None, :]
        self.register_buffer("rope_cos", torch.cos(ang).float(), persistent=False)
        self.register_buffer("rope_sin", torch.sin(ang).float(), persistent=False)
        hk = torch.arange(Dc // 2, dtype=torch.float64)
        self.register_buffer("time_freq", torch.exp(-hk * math.log(1e4) / (Dc // 2 - 1)), persistent=False)

    def init_md4(self, seed):
        """md4.md §6.1 initialisation (Flax defaults) from torch's global RNG seeded with seed:
        truncated normals cut at ±2σ_0 and rescaled by 1/0.8796 (Flax's variance_scaling with
        "truncated_normal"), LeCun for Dense, scale 2/layers for the MLP, normal(1/D) for the
        embedding, zeros for adaLN, biases and the head."""
        torch.manual_seed(seed)
        L = self.cfg["layers"]

        def trunc(w, scale):
            std = math.sqrt(scale / w.shape[1]) / 0.87962566103423978
            nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2 * std, b=2 * std)

        with torch.no_grad():
            for _, p in self.named_parameters():
                p.zero_()
            nn.init.normal_(self.token_embed.weight, std=1 / math.sqrt(self.D))
            trunc(self.time_embed.fc1.weight, 1.0)
            trunc(self.time_embed.fc2.weight, 1.0)
            for b in self.blocks:
                for lin in (b.attn.q, b.attn.k, b.attn.v, b.attn.o):
                    trunc(lin.weight, 1.0)
                for lin in (b.mlp.w1, b.mlp.w3, b.mlp.w2):
                    trunc(lin.weight, 2.0 / L)

    @staticmethod
    def layer_norm_mod(x, shift, scale, eps):
        return F.layer_norm(x, (x.shape[-1],), eps=eps) * (1 + scale[:, None, :]) + shift[:, None, :]

    def rope(self, x):  # x [B, L, H, Dh], adjacent pairs (2k, 2k+1)
        B, L, H, Dh = x.shape
        x = x.reshape(B, L, H, Dh // 2, 2)
        x0, x1 = x[..., 0], x[..., 1]
        c = self.rope_cos[None, :, None, :].to(x0.dtype)
        s = self.rope_sin[None, :, None, :].to(x0.dtype)
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).reshape(B, L, H, Dh)

    def attention(self, q, k, v):  # [B, L, H, Dh] → [B, L, H·Dh]
        B, L, H, Dh = q.shape
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(Dh))
            o = torch.matmul(torch.softmax(s, dim=-1), v)
        return o.transpose(1, 2).reshape(B, L, H * Dh)

    def cond(self, t):
        a = self.cfg["time_scale"] * t.double()[:, None] * self.time_freq[None, :]
        temb = torch.cat((torch.sin(a), torch.cos(a)), dim=1).to(self.time_embed.fc1.weight.dtype)
        c = self.time_embed.fc2(F.silu(self.time_embed.fc1(temb)))
        return torch.sigmoid(c)  # act(c) with the MLP's activation ('glu' = sigmoid)

    def forward(self, xt, t, mask):
        """Logits [R, V] of the masked rows (mask [B, L] bool, rows in (b, l) order)."""
        B, L = xt.shape
        ca = self.cond(t)
        x = self.token_embed(xt)
        for blk in self.blocks:
            sa, ca_, ga, sm, cm, gm = blk.adaln(ca).chunk(6, dim=1)
            n1 = self.layer_norm_mod(x, sa, ca_, self.eps)
            q = self.rope(blk.attn.q(n1).view(B, L, self.H, self.dh))
            k = self.rope(blk.attn.k(n1).view(B, L, self.H, self.dh))
            v = blk.attn.v(n1).view(B, L, self.H, self.dh)
            x = x + ga[:, None, :] * blk.attn.o(self.attention(q, k, v))
            n2 = self.layer_norm_mod(x, sm, cm, self.eps)
            x = x + gm[:, None, :] * blk.mlp.w2(torch.sigmoid(blk.mlp.w1(n2)) * blk.mlp.w3(n2))
        shift, scale = self.final.adaln(ca).chunk(2, dim=1)
        nf = self.layer_norm_mod(x, shift, scale, self.eps)
        return self.head(nf[mask])


# ----------------------------------------------------------------------------------------
# loss and step


def row_weights(cfg, t):
    """c(t)/(L·ln 2)/B per sequence, float64: the MaskedCE row weights (bits per token)."""
    eps, B = cfg["sched_eps"], t.shape[0]
    c = (1 - 2 * eps) / ((1 - 2 * eps) * t.double() + eps)
    return c / (cfg["seq_len"] * math.log(2) * B)


def const_bits(cfg):
    """Reconstruction term L·ε·ln V nats per sequence, in bits per token (the md4 code's bound)."""
    return cfg["sched_eps"] * math.log2(cfg["vocab"])


def loss_bits(model, cfg, x0, xt, t, mask, autocast=None):
    w = row_weights(cfg, t).to(x0.device)
    rw = w[:, None].expand_as(mask)[mask]
    ctx = autocast if autocast is not None else _null()
    with ctx:
        logits = model(xt, t, mask)
    ce = F.cross_entropy(logits.float(), x0[mask], reduction="none")
    diff = (rw.to(ce.dtype) * ce).sum()
    return diff, diff.detach().double() + const_bits(cfg)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def draw_batch(cfg, x0, gen):
    """Antithetic times and the masks of one step, on x0's device (torch's RNG; Go's Philox
    draws differ, which does not matter for timing)."""
    B, L, eps = x0.shape[0], x0.shape[1], cfg["sched_eps"]
    dev = x0.device
    u = torch.rand((), generator=gen, dtype=torch.float64, device=dev)
    t = torch.remainder(u + torch.arange(B, dtype=torch.float64, device=dev) / B, 1.0)
    p = (1 - 2 * eps) * t + eps
    mask = torch.rand((B, L), generator=gen, dtype=torch.float64, device=dev) < p[:, None]
    xt = torch.where(mask, torch.full_like(x0, cfg["vocab"]), x0)
    return xt, t, mask


class Trainer:
    def __init__(self, model, cfg, device, fused=False):
        self.model, self.cfg, self.device = model, cfg, device
        params = list(model.parameters())
        kw = dict(lr=0.0, betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["adam_eps"], weight_decay=cfg["weight_decay"])
        if fused:
            try:
                self.opt = torch.optim.AdamW(params, fused=True, **kw)
            except (TypeError, RuntimeError):
                self.opt = torch.optim.AdamW(params, foreach=True, **kw)
        else:
            try:
                self.opt = torch.optim.AdamW(params, foreach=True, **kw)
            except TypeError:
                self.opt = torch.optim.AdamW(params, **kw)
        self.ema = [p.detach().clone() for p in params]
        self.params = params
        self.updates = 0

    def ema_update(self):
        d = self.cfg["ema_decay"]
        with torch.no_grad():
            if hasattr(torch, "_foreach_lerp_"):
                torch._foreach_lerp_(self.ema, self.params, 1 - d)
            else:
                for e, p in zip(self.ema, self.params):
                    e.add_(p - e, alpha=1 - d)

    def grad_norm(self):
        gs = [p.grad for p in self.params if p.grad is not None]
        if hasattr(torch, "_foreach_norm"):
            return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs)))
        return torch.sqrt(sum((g.double() ** 2).sum() for g in gs))

    def step(self, x0, xt, t, mask, autocast=None):
        """One training step; returns (loss in bits per token, grad norm) as tensors."""
        self.opt.zero_grad(set_to_none=True)
        diff, bits = loss_bits(self.model, self.cfg, x0, xt, t, mask, autocast)
        diff.backward()
        norm = self.grad_norm()
        for g in self.opt.param_groups:
            g["lr"] = learning_rate(self.cfg, self.updates)
        self.opt.step()
        self.ema_update()
        self.updates += 1
        return bits, norm


# ----------------------------------------------------------------------------------------
# safetensors (the package when installed, else the specification)

DT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8}
DT_NAME = {v: k for k, v in DT.items()}


def _raw(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def load_safetensors(path):
    """Returns (tensors, metadata), checking mdm-gpu's CRC-32 fingerprints when present."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    crcs = json.loads(meta["mdm.ckpt.crc32"]) if "mdm.ckpt.crc32" in meta else None
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        if crcs is not None:
            got = "%08x" % zlib.crc32(data[a:b])
            if got != crcs.get(name):
                raise ValueError("%s: CRC-32 of %s is %s, the file records %s" % (path, name, got, crcs.get(name)))
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=DT[info["dtype"]]).reshape(info["shape"]).clone()
    return out, meta


def save_safetensors(path, tensors, meta):
    """Writes an mdm-gpu checkpoint (with the mdm.ckpt.* fingerprint metadata Go's ckpt.Load requires)."""
    raws = {k: _raw(v) for k, v in tensors.items()}
    meta = dict(meta)
    meta["mdm.ckpt.format_version"] = "1"
    meta["mdm.ckpt.tensors"] = str(len(tensors))
    meta["mdm.ckpt.elements"] = str(sum(v.numel() for v in tensors.values()))
    meta["mdm.ckpt.param_count"] = str(sum(v.numel() for k, v in tensors.items()
                                           if not k.startswith("ema.") and not k.startswith("adam.")))
    meta["mdm.ckpt.crc32"] = json.dumps({k: "%08x" % zlib.crc32(r) for k, r in raws.items()})
    meta.setdefault("format", "pt")
    try:
        import safetensors.torch as st
        st.save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path, metadata=meta)
        return
    except ImportError:
        pass
    hdr, body, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        hdr[k] = {"dtype": DT_NAME[tensors[k].dtype], "shape": list(tensors[k].shape), "data_offsets": [off, off + len(raws[k])]}
        off += len(raws[k])
        body.append(raws[k])
    hj = json.dumps(hdr).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(body))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------
# modes


def versions(device):
    v = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
         "device": str(device)}
    try:
        import numpy
        v["numpy"] = numpy.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        v["gpu"] = torch.cuda.get_device_name(device)
        v["cuda"] = torch.version.cuda
    else:
        cfg = torch.__config__.show()
        blas = [ln.strip() for ln in cfg.splitlines() if "BLAS_INFO" in ln]
        v["blas_info"] = blas[0][:120] if blas else ""
        try:
            libs = [ln.split()[-1] for ln in open("/proc/self/maps") if "blas" in ln.lower()]
            v["blas_libs"] = sorted(set(os.path.basename(x) for x in libs))
        except OSError:
            pass
    return v


def check(args):
    d = args.check
    cfg = json.load(open(os.path.join(d, "config.json")))
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model = MD4(cfg).to(device)
    state, meta = load_safetensors(os.path.join(d, "state.safetensors"))
    names = [k for k, _ in model.named_parameters()]
    missing = [k for k in names if k not in state]
    extra = [k for k in state if not k.startswith(("ema.", "adam.")) and k not in names]
    if missing or extra:
        raise SystemExit("checkpoint names do not map onto the PyTorch modules: missing %s, unexpected %s" % (missing, extra))
    model.load_state_dict({k: state[k] for k in names}, strict=True)
    batch, _ = load_safetensors(os.path.join(d, "batch.safetensors"))
    x0 = batch["x0"].long().to(device)
    xt = batch["xt"].long().to(device)
    t = batch["t"].to(device)
    mask = xt == cfg["vocab"]
    updates = int(meta["mdm.train.updates"])
    tr = Trainer(model, cfg, device)
    tr.updates = updates
    params = dict(model.named_parameters())
    for n, p in params.items():
        tr.opt.state[p] = {"step": torch.tensor(float(updates)), "exp_avg": state["adam.m." + n].to(device).clone(),
                           "exp_avg_sq": state["adam.v." + n].to(device).clone()}
    tr.ema = [state["ema." + n].to(device).clone() for n in params]
    lr = learning_rate(cfg, updates)
    bits, norm = tr.step(x0, xt, t, mask)
    grads = {"grad." + n: p.grad for n, p in params.items()}
    out = {}
    for i, (n, p) in enumerate(params.items()):
        out[n] = p.detach()
        out["ema." + n] = tr.ema[i]
        out["adam.m." + n] = tr.opt.state[p]["exp_avg"]
        out["adam.v." + n] = tr.opt.state[p]["exp_avg_sq"]
    m2 = {k: v for k, v in meta.items() if not k.startswith("mdm.ckpt.")}
    m2["mdm.train.step"] = str(int(meta["mdm.train.step"]) + 1)
    m2["mdm.train.updates"] = str(updates + 1)
    m2["mdm.train.written_by"] = "bench/pytorch/md4.py torch " + torch.__version__
    save_safetensors(os.path.join(d, "torch_state.safetensors"), out, m2)
    save_safetensors(os.path.join(d, "torch_grads.safetensors"), grads, {"mdm.train.step": meta["mdm.train.step"]})
    res = {"mode": "check", "loss_bits": float(bits), "masked": int(mask.sum()), "grad_norm": float(norm),
           "lr": lr, "updates": updates, "versions": versions(device)}
    json.dump(res, open(os.path.join(d, "torch.json"), "w"), indent=1)
    print(json.dumps(res))


def make_bench(args):
    cfg = dict(SHAPES[args.shape])
    if args.config:
        cfg.update(json.load(open(args.config)))
    if args.batch:
        cfg["batch"] = args.batch
    device = torch.device(args.device)
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    gen = torch.Generator().manual_seed(args.seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = MD4(cfg, sdpa=cuda or args.sdpa)
    model.init_md4(args.seed)
    # Random weights in the zero-initialised projections too, so that the step does real work
    # everywhere (a step from MD4's init has zero gates and head; timing does not depend on it).
    with torch.no_grad():
        for n, p in model.named_parameters():
            if torch.count_nonzero(p) == 0 and p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / math.sqrt(p.shape[1])))
    model = model.to(device)
    tr = Trainer(model, cfg, device, fused=cuda)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and not args.fp32 else None
    step_fn = tr.step
    if args.compile:
        if not hasattr(torch, "compile"):
            raise SystemExit("--compile needs torch >= 2 (this is torch %s)" % torch.__version__)
        # dynamic=True: the number of masked rows changes every step (the head runs on them only)
        model.forward = torch.compile(model.forward, dynamic=True)
    x0 = torch.randint(0, cfg["vocab"], (cfg["batch"], cfg["seq_len"]), generator=gen).to(device)
    dgen = torch.Generator(device=device).manual_seed(args.seed + 1)

    def one():
        """One timed step: (wall seconds, process CPU seconds)."""
        t0, c0 = time.perf_counter(), time.process_time()
        xt, t, mask = draw_batch(cfg, x0, dgen)  # our step draws its times and masks too
        bits, norm = step_fn(x0, xt, t, mask, autocast)
        float(bits)  # the step's loss on the host, as our TrainStep returns it (synchronises)
        float(norm)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0

    return cfg, device, one


def bench(args):
    cfg, device, one = make_bench(args)
    for _ in range(args.warmup):
        one()
    tc = [one() for _ in range(args.steps)]
    times, cpu = [w for w, _ in tc], [c for _, c in tc]
    tok = cfg["batch"] * cfg["seq_len"]
    s = sorted(times)
    med = s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
    print(json.dumps({"mode": "bench", "shape": cfg["name"], "batch": cfg["batch"], "seq_len": cfg["seq_len"],
                      "step_seconds": times, "cpu_seconds": cpu, "median_seconds": med, "min_seconds": s[0],
                      "tokens_per_second": tok / med, "best_tokens_per_second": tok / s[0],
                      "compile": bool(args.compile), "versions": versions(device)}), flush=True)


def serve(args):
    cfg, device, one = make_bench(args)
    print(json.dumps({"mode": "ready", "shape": cfg["name"], "batch": cfg["batch"], "seq_len": cfg["seq_len"],
                      "versions": versions(device)}), flush=True)
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if f[0] == "quit":
            break
        if f[0] == "steps":
            tc = [one() for _ in range(int(f[1]))]
            print(json.dumps({"step_seconds": [w for w, _ in tc], "cpu_seconds": [c for _, c in tc]}), flush=True)
        else:
            print(json.dumps({"error": "unknown command %r" % line.strip()}), flush=True)


def _time_cuda(fn, iters):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / 1e3 / iters


def kernels(args):
    """PyTorch equivalents of our kernel benchmarks (bench/kernels.go, same names and shapes)
    on the GPU: seconds per call."""
    device = torch.device(args.device)
    if device.type != "cuda":
        raise SystemExit("--kernels needs --device cuda")
    it = args.steps
    res = {"mode": "kernels", "versions": versions(device), "results": []}

    def add(name, op, fn):
        try:
            res["results"].append({"name": name, "op": op, "seconds": _time_cuda(fn, it)})
        except Exception as e:  # noqa: BLE001 (report, go on)
            res["results"].append({"name": name, "op": op, "seconds": 0, "error": str(e)[:300]})
        torch.cuda.empty_cache()

    bf = torch.bfloat16
    n = 1 << 28
    x = torch.empty(n, device=device)
    y = torch.empty_like(x)
    add("copy", "y.copy_(x) f32", lambda: y.copy_(x))
    del x, y
    a = torch.randn(8192, 768, device=device, dtype=bf)
    w = torch.randn(3 * 768, 768, device=device, dtype=bf)
    add("matmul", "F.linear bf16", lambda: F.linear(a, w))
    del a, w
    B, H, L, Dh = 8, 12, 1024, 64
    q, k, v = (torch.randn(B, H, L, Dh, device=device, dtype=bf, requires_grad=True) for _ in range(3))
    add("attn_fwd", "F.scaled_dot_product_attention", lambda: F.scaled_dot_product_attention(q, k, v))
    o = F.scaled_dot_product_attention(q, k, v)
    g = torch.randn_like(o)
    add("attn_bwd", "SDPA backward (autograd)", lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True))
    del q, k, v, o, g
    R, V = 4096, 50257
    logits = torch.randn(R, V, device=device, dtype=bf, requires_grad=True)
    tg = torch.randint(0, V, (R,), device=device)
    wr = torch.rand(R, device=device)

    def ce():
        loss = (F.cross_entropy(logits.float(), tg, reduction="none") * wr).sum()
        loss.backward()
    add("masked_ce", "F.cross_entropy fwd+bwd (fp32 upcast)", ce)
    with torch.no_grad():
        lg = logits.detach()
        add("sample", "torch.multinomial(softmax(logits.float()))", lambda: torch.multinomial(torch.softmax(lg.float(), -1), 1))
    del logits, lg
    N, D = 8 * 1024, 768
    xx = torch.randn(8, 1024, D, device=device, dtype=bf)
    sh, sc = torch.randn(8, 1, D, device=device, dtype=bf), torch.randn(8, 1, D, device=device, dtype=bf)
    add("layernorm_fwd", "F.layer_norm·(1+scale)+shift", lambda: F.layer_norm(xx, (D,)) * (1 + sc) + sh)
    del xx, sh, sc
    P = 124_000_000
    ps = [torch.randn(P, device=device, requires_grad=True)]
    ps[0].grad = torch.randn_like(ps[0])
    ema = [ps[0].detach().clone()]
    try:
        opt = torch.optim.AdamW(ps, lr=1e-4, fused=True)
        what = "AdamW(fused=True) + _foreach_lerp_ EMA"
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(ps, lr=1e-4, foreach=True)
        what = "AdamW(foreach=True) + EMA"

    def adamw():
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, ps, 1e-4) if hasattr(torch, "_foreach_lerp_") else ema[0].add_(ps[0] - ema[0], alpha=1e-4)
    add("adamw", what, adamw)
    print(json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--check", metavar="DIR")
    ap.add_argument("--kernels", action="store_true")
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    ap.add_argument("--config", help="JSON file of shape fields overriding --shape")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward (torch ≥ 2)")
    ap.add_argument("--sdpa", action="store_true", help="use SDPA on the CPU too (torch ≥ 2)")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast on the GPU")
    args = ap.parse_args()
    if args.check:
        check(args)
    elif args.serve:
        serve(args)
    elif args.kernels:
        kernels(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
