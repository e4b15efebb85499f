"""Trains one model of the family (tools/train/family.py) and exports it as a kvserve model.

    nice -n 10 /usr/bin/python3 -m tools.train.train --kind mha --seed 1 \
        --tokenizer build/tokenizer --out models/kvserve-mha

(from the repository root, after tools.train.corpus and tools.train.bpe). One CPU thread.

Data: the token streams tools/train/bpe.py wrote beside the tokenizer ({train,validation}.ids.npy:
every record as <|endoftext|> + its ids, in file order). A training batch is BATCH windows of CONTEXT + 1 tokens at
offsets drawn uniformly from a generator seeded with --seed (so every kind of one seed sees the
same batches). Loss: mean next-token cross-entropy over all positions.

Optimiser (identical for every kind): AdamW, betas (0.9, 0.95), weight decay 0.1 on matrices
only, peak learning rate LR after WARMUP linear steps, cosine decay to LR/10 at --steps, gradient
norm clipped to 1. Initial weights are drawn from a generator seeded with --seed as well.
torch.use_deterministic_algorithms and one thread make a rerun reproduce the same weights:
verified on 2026-12-05 by training fortune-hybrid (seed 1, 1,500 steps) a second time, while
other processes loaded the machine: model.safetensors byte-identical, the same losses at every
logged step and the same validation perplexity.

Export into --out: config.json, model.safetensors (bf16, round to nearest even),
tokenizer.json / tokenizer_config.json / generation_config.json (copied), and perplexity.json:
  excerpt_ids       the first EXCERPT_TOKENS tokens of the validation stream
  perplexity        exp(-mean log p(ids[i] | ids[<i]), i = 1..EXCERPT_TOKENS-1), computed in
                    float64 by the tools/reference forward pass on the stored bf16 values
  validation_perplexity  the same over the whole validation stream in CONTEXT-token windows
                    (each window scored from its own start), float32 training forward on the
                    stored bf16 values
  plus the config hash, seed, steps, parameter count, final training loss and the time it took.
Before writing, the training forward (float64) is checked against the reference forward on the
stored weights (family.check_against_reference).
"""

import argparse
import ctypes
import hashlib
import json
import math
import pathlib
import shutil
import time

import numpy as np
import torch

from tools.reference.common import bf16_bits_to_float32, float32_to_bf16_bits, write_safetensors

from . import bpe, family

BATCH = 8
LR = 3e-3
WARMUP = 10
WEIGHT_DECAY = 0.1
EXCERPT_TOKENS = 200


def load_stream(tokenizer_dir, split):
    return torch.from_numpy(np.load(tokenizer_dir / f"{split}.ids.npy").astype(np.int64))


def lr_at(step, steps):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, steps - WARMUP)
    return LR * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train(config, stream, seed, steps, log_every=25):
    gen = torch.Generator().manual_seed(seed)
    params = {n: torch.nn.Parameter(t) for n, t in family.init_params(config, gen).items()}
    decay = [p for n, p in params.items() if p.dim() >= 2 and ".s4." not in n]
    no_decay = [p for n, p in params.items() if not (p.dim() >= 2 and ".s4." not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    data_gen = torch.Generator().manual_seed(seed + 1000)
    t = family.CONTEXT
    losses = []
    for step in range(steps):
        starts = torch.randint(0, len(stream) - t - 1, (BATCH,), generator=data_gen)
        batch = torch.stack([stream[s:s + t + 1] for s in starts.tolist()])       # [B, T+1]
        logits = family.forward(config, params, batch[:, :-1])                   # [B, T, V]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 batch[:, 1:].reshape(-1))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == steps - 1:
            print(f"  step {step:5d}  loss {loss.item():.4f}", flush=True)
    return params, losses


def round_bf16(weights):
    """{name: (bf16 bits as uint16 array, float64 tensor of the stored values)}."""
    out = {}
    for name, w in weights.items():
        bits = float32_to_bf16_bits(w.numpy())
        out[name] = (bits, torch.from_numpy(bf16_bits_to_float32(bits).astype(np.float64)))
    return out


def mean_nll(logits, ids):
    """logits [T, V] of ids [T]: mean -log p(ids[i] | ids[<i]), i = 1..T-1."""
    logp = torch.log_softmax(logits[:-1], dim=-1)
    return -logp.gather(1, ids[1:, None]).mean().item()


@torch.no_grad()
def stream_perplexity(config, w, stream):
    """Perplexity of the stream in consecutive CONTEXT-token windows (each window's first token
    is context only)."""
    t = family.CONTEXT
    total, count = 0.0, 0
    for start in range(0, len(stream) - 1, t):
        ids = stream[start:start + t + 1]
        if len(ids) < 2:
            break
        logits = family.forward(config, w, ids[None, :])[0]
        total += mean_nll(logits.double(), ids) * (len(ids) - 1)
        count += len(ids) - 1
    return math.exp(total / count)


def export(out, config, params, tokenizer_dir, val_stream, meta):
    out.mkdir(parents=True, exist_ok=True)
    stored = round_bf16(family.hf_weights(params))
    w64 = {n: v for n, (_, v) in stored.items()}
    excerpt = val_stream[:EXCERPT_TOKENS]
    rel = family.check_against_reference(config, w64, excerpt)
    ref_logits = family.reference_logits(config, w64, excerpt)
    ppl = math.exp(mean_nll(ref_logits, excerpt))
    w32 = family.train_view({n: v.float() for n, v in w64.items()})
    val_ppl = stream_perplexity(config, w32, val_stream)
    write_safetensors(out / "model.safetensors", {n: ("BF16", b) for n, (b, _) in stored.items()})
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copyfile(pathlib.Path(tokenizer_dir) / name, out / name)
    result = dict(meta, excerpt_tokens=EXCERPT_TOKENS, perplexity=ppl,
                  perplexity_definition="exp(-mean log p(ids[i] | ids[<i]), i = 1..n-1), "
                  "float64 reference forward on the stored bf16 weights",
                  validation_perplexity=val_ppl, training_vs_reference_max_rel_diff=rel,
                  excerpt_ids=excerpt.tolist())
    (out / "perplexity.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def keep_freed_memory():
    """Stops glibc from returning every large freed buffer to the kernel: the activations of one
    step are re-allocated by the next, and the page faults of fresh mmaps cost about three times
    the arithmetic here (measured: 3.9 -> 0.9 CPU seconds per MHA step)."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    for option in (m_trim_threshold, m_top_pad, m_mmap_threshold):
        libc.mallopt(option, 1 << 30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", required=True, choices=family.KINDS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=220)  # the shipped models (docs/quality.md)
    parser.add_argument("--tokenizer", default="build/tokenizer", type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    enc = bpe.Encoder(bpe.read_merges(args.tokenizer))
    train_stream = load_stream(args.tokenizer, "train")
    val_stream = load_stream(args.tokenizer, "validation")
    eos = [enc.special["<|endoftext|>"], enc.special["<|im_end|>"]]
    config = family.equalise(args.kind, enc.special["<|endoftext|>"], eos)
    print(f"train: {args.kind} seed {args.seed}: {family.num_params(config)} parameters, "
          f"{len(train_stream)} train / {len(val_stream)} validation tokens", flush=True)
    begin = time.process_time()
    params, losses = train(config, train_stream, args.seed, args.steps)
    cpu = time.process_time() - begin
    meta = {"kind": args.kind, "seed": args.seed, "steps": args.steps, "batch": BATCH,
            "context": family.CONTEXT, "num_params": family.num_params(config),
            "final_train_loss_mean_last_20": float(np.mean(losses[-20:])),
            "train_cpu_seconds": round(cpu, 1),
            "tokenizer_sha256": hashlib.sha256(
                (args.tokenizer / "tokenizer.json").read_bytes()).hexdigest()}
    result = export(args.out, config, params, args.tokenizer, val_stream, meta)
    print(json.dumps({k: v for k, v in result.items() if k != "excerpt_ids"}, indent=1))


if __name__ == "__main__":
    main()
