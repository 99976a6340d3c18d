#!/usr/bin/env python3
"""Issue 2's 600-step tinyshakespeare run with the PyTorch baseline of md4.py.

An independent cross-check of engine/train's TestTinyShakespeare600: the same model,
initialisation rules, loss and optimiser as mdm-gpu (bench/pytorch/md4.py, whose single
step agrees with ours to 5e-8 in the loss), trained with torch's own random numbers for
windows, times and masks: char vocabulary of the whole file (V = 65), the first 90% for
training and non-overlapping L = 128 windows of the last 10% for validation, batch 32,
AdamW lr 2e-3, 50 warmup steps then cosine over 600, weight decay 0.03, no clipping.
It prints the validation NELBO (bits per char, raw weights, one antithetic time and mask
per window) at step 0 and every 100 steps, one JSON object per line. Its spread over
seeds shows how much of the step-600 value is trajectory noise rather than the engine.

  /usr/bin/python3 bench/pytorch/tinyshakespeare.py --data ../shared/data/char/tinyshakespeare.txt --seed 1
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import md4  # noqa: E402  (sets the thread environment from --threads before torch loads)
import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="tinyshakespeare.txt")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    text = open(args.data, encoding="utf-8").read()
    if not text:
        sys.exit("--data %s is empty" % args.data)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_val = int(round(len(ids) * 0.1))
    train_ids, val_ids = ids[:-n_val], ids[-n_val:]
    cfg = dict(md4.TINY, vocab=len(chars), total_steps=args.steps)
    L, B = cfg["seq_len"], cfg["batch"]
    if len(train_ids) < L or len(val_ids) < L:
        sys.exit("--data %s: %d characters are too few for windows of %d" % (args.data, len(ids), L))
    model = md4.MD4(cfg)
    model.init_md4(args.seed)
    trainer = md4.Trainer(model, cfg, torch.device("cpu"))
    gen = torch.Generator().manual_seed(args.seed * 1000 + 1)
    n_win = len(val_ids) // L
    val = val_ids[: n_win * L].view(n_win, L)
    eval_cfg = dict(cfg, batch=64)

    def evaluate():
        g = torch.Generator().manual_seed(7)
        total, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, n_win - 63, 64):  # full batches of 64 windows
                x0 = val[i:i + 64]
                xt, t, mask = md4.draw_batch(eval_cfg, x0, g)
                _, bits = md4.loss_bits(model, eval_cfg, x0, xt, t, mask)
                total += float(bits) * 64
                n += 64
        return total / n

    def report(step, **kw):
        print(json.dumps(dict(seed=args.seed, step=step, val_bits=round(evaluate(), 4), **kw)), flush=True)

    report(0, vocab=len(chars), windows=n_win)
    start = time.time()
    for s in range(args.steps):
        off = torch.randint(0, len(train_ids) - L + 1, (B,), generator=gen)
        x0 = torch.stack([train_ids[o:o + L] for o in off.tolist()])
        xt, t, mask = md4.draw_batch(cfg, x0, gen)
        bits, _ = trainer.step(x0, xt, t, mask)
        if (s + 1) % 100 == 0 or s + 1 == args.steps:
            report(s + 1, train_bits=round(float(bits), 4), seconds=round(time.time() - start, 1))


if __name__ == "__main__":
    main()
