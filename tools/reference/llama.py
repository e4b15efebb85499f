"""Independent PyTorch reference for Llama-style models (Llama, Qwen2, Qwen3), and the test
fixtures built from it.

Run only with /usr/bin/python3 (Debian's torch and numpy):

    /usr/bin/python3 -m tools.reference.llama            # (re)write the fixtures in FIXTURES
    /usr/bin/python3 -m tools.reference.llama --check    # regenerate into a temp dir, compare bytes
    /usr/bin/python3 -m tools.reference.llama --out-dir /tmp/fixtures

(from the repository root; tools/reference/common.py holds the I/O and command line it shares
with the other reference models).

What it writes. For each fixture in FIXTURES, a directory <out-dir>/<name>/ holding:

  config.json           Hugging Face style config of the fixture's architecture (keys sorted).
  model.safetensors     random weights in Hugging Face tensor names and layouts, F32 or BF16.
  expected.safetensors  input_ids (I32, [T]) and logits (F32, [T, vocab]): the logits at every
                        position of one causal forward pass over input_ids, positions 0..T-1.

The fixtures:

  tiny_llama_gqa        vocab 64, hidden 16, 2 layers, 4 query heads, 2 kv heads (GQA, 2 query
                        heads per kv head), head_dim 4 (derived: hidden / heads, not in the
                        config), intermediate 32, rope_theta 50000, rms_norm_eps 1e-5, untied
                        lm_head, weights stored as BF16.
  tiny_llama_mqa_tied   vocab 48, hidden 24, 2 layers, 4 query heads, 1 kv head (MQA), explicit
                        head_dim 8 (heads * head_dim = 32 != hidden), intermediate 40,
                        rope_theta 10000, rms_norm_eps 1e-6, tie_word_embeddings (no lm_head
                        tensor: the LM head is model.embed_tokens.weight), weights stored as F32.
  tiny_qwen2_bias       Qwen2ForCausalLM: vocab 64, hidden 16, 2 layers, 4 heads, 2 kv heads,
                        head_dim 4, q/k/v projection biases (o_proj none), tied embeddings,
                        rope_theta 1e6, a sliding_window that is off (use_sliding_window false,
                        as Qwen2.5 ships it), weights F32.
  tiny_qwen2_sliding_window  Qwen2ForCausalLM with a window in effect: use_sliding_window true,
                        sliding_window 4, max_window_layers 1 (layer 0 full, layer 1 windowed:
                        a query sees itself and the 3 positions before it), vocab 48, hidden 16,
                        4 heads, 2 kv heads, untied, F32.
  tiny_qwen3_qknorm     Qwen3ForCausalLM: vocab 56, hidden 16, 2 layers, 4 heads, 2 kv heads,
                        explicit head_dim 8 (heads * head_dim = 32 != hidden), q_norm / k_norm,
                        attention_bias false, rope_scaling {"type": "linear", "factor": 2}
                        (the legacy key spelling), untied, weights BF16.
  tiny_llama3_rope_scaling  LlamaForCausalLM with Llama 3.1's rope_scaling (factor 8,
                        low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings
                        64): head_dim 8 at rope_theta 1e4 puts one frequency in each band (kept,
                        blended, divided); plus the extra keys Llama 3 / SmolLM2 / TinyLlama
                        configs carry (pretraining_tp, attention_dropout, mlp_bias false), F32.

The forward pass is written from the equations (not from any other implementation) and runs in
float64 on the exact stored weight values (BF16 weights are upcast after rounding); only the
final logits are rounded to float32:

  h_0     = embed_tokens[ids]                                           [T, hidden]
  per layer:
    x     = RMSNorm(h) = h / sqrt(mean(h^2) + eps) * input_layernorm
    q,k,v = x @ Wq.T, x @ Wk.T, x @ Wv.T       [T, heads*d], [T, kv_heads*d], [T, kv_heads*d]
    q,k   += bq, bk, bv                          (Qwen2 only)
    q,k   = RMSNorm over each head's d values with q_norm / k_norm     (Qwen3 only)
    (sliding-window layers: the causal mask also hides keys at or before pos - sliding_window)
    q,k   = RoPE, half-split ("rotate-half") pairs (j, j + d/2), inv_freq[j] = theta^(-2j/d),
            angle = pos * inv_freq[j], positions 0..T-1; with rope_scaling:
              linear:  inv_freq[j] / factor
              llama3:  wavelength w = 2 pi / inv_freq[j], L0 = original_max_position_embeddings;
                       w < L0 / high_freq_factor: unchanged; w > L0 / low_freq_factor:
                       inv_freq[j] / factor; otherwise, with
                       s = (L0 / w - low_freq_factor) / (high_freq_factor - low_freq_factor),
                       (1 - s) * inv_freq[j] / factor + s * inv_freq[j]
    o_h   = softmax(q_h k_g^T / sqrt(d) + causal mask) v_g,  g = h // (heads / kv_heads)
    h     = h + concat_h(o_h) @ Wo.T
    x     = RMSNorm(h) with post_attention_layernorm
    h     = h + (silu(x @ Wgate.T) * (x @ Wup.T)) @ Wdown.T
  logits  = RMSNorm(h) with model.norm, then @ lm_head.T (embed_tokens.T when tied)

Determinism: weights and input ids come from torch.Generator with fixed seeds, tensors are
written in sorted-name order and the JSON headers have a fixed key order, so two runs with the
same torch build give byte-identical files. A different torch build could in principle draw
different random numbers or round a float64 matmul differently; --check then reports the
numeric differences to tell the two apart.

Before writing anything the script runs self-checks: GQA with kv_heads == heads equals an
explicit MHA computation (and kv_heads == 1 equals explicit MQA, and GQA equals MHA on repeated
K/V heads); RoPE scores depend only on relative position; an incremental decode with a KV cache
reproduces the full causal forward; the safetensors writer round-trips; and each fixture's
logits change materially under common implementation mistakes (interleaved RoPE pairs, no RoPE,
wrong kv-head mapping, wrong score scale), so a buggy engine cannot pass by accident.
"""

import math
import pathlib
import sys
import tempfile

import numpy as np
import torch

from .common import (
    FIXTURE_FILES,
    bf16_bits_to_float32,
    causal_mask,
    close,
    input_ids,
    random_weight,
    read_safetensors,
    rms_norm,
    run_cli,
    self_check_safetensors_roundtrip,
    stored_weights,
    write_fixture_files,
)

# Fixture definitions. `config` is written verbatim to config.json; `seed` drives the weights
# (seed) and the input ids (seed + 1); `storage_dtype` is the safetensors dtype of the weights.
FIXTURES = {
    "tiny_llama_gqa": {
        "seed": 20240513,
        "storage_dtype": "BF16",
        "num_tokens": 12,
        "config": {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "torch_dtype": "bfloat16",
            "vocab_size": 64,
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 32,
            "rope_theta": 50000.0,
            "rope_scaling": None,
            "rms_norm_eps": 1e-5,
            "max_position_embeddings": 128,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "mlp_bias": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
    "tiny_llama_mqa_tied": {
        "seed": 20240529,
        "storage_dtype": "F32",
        "num_tokens": 12,
        "config": {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "vocab_size": 48,
            "hidden_size": 24,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "intermediate_size": 40,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 128,
            "tie_word_embeddings": True,
            "attention_bias": False,
            "mlp_bias": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
    "tiny_qwen2_bias": {
        "seed": 20240919,
        "storage_dtype": "F32",
        "num_tokens": 12,
        "config": {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "vocab_size": 64,
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 32,
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 128,
            "max_window_layers": 1,
            "sliding_window": 64,
            "use_sliding_window": False,
            "attention_dropout": 0.0,
            "use_cache": True,
            "tie_word_embeddings": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
    "tiny_qwen2_sliding_window": {
        "seed": 20240607,
        "storage_dtype": "F32",
        "num_tokens": 12,
        "config": {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "vocab_size": 48,
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 32,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 64,
            "max_window_layers": 1,
            "sliding_window": 4,
            "use_sliding_window": True,
            "attention_dropout": 0.0,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
    "tiny_qwen3_qknorm": {
        "seed": 20250430,
        "storage_dtype": "BF16",
        "num_tokens": 12,
        "config": {
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "hidden_act": "silu",
            "torch_dtype": "bfloat16",
            "vocab_size": 56,
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "intermediate_size": 24,
            "rope_theta": 10000.0,
            "rope_scaling": {"type": "linear", "factor": 2.0},
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 256,
            "max_window_layers": 2,
            "sliding_window": None,
            "use_sliding_window": False,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": [2, 3],
        },
    },
    "tiny_llama3_rope_scaling": {
        "seed": 20240724,
        "storage_dtype": "F32",
        "num_tokens": 12,
        "config": {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "vocab_size": 64,
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "intermediate_size": 32,
            "rope_theta": 10000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            "rms_norm_eps": 1e-5,
            "max_position_embeddings": 512,
            "pretraining_tp": 1,
            "attention_dropout": 0.0,
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    },
}

# Weight distribution: large enough that logits are O(1..10) and attention is neither uniform
# nor one-hot, so every part of the forward pass moves the logits.
MATRIX_STD = 0.5


# ----------------------------------------------------------------------------------------------
# Model shape


class Shape:
    """The dimensions of a Llama model, derived from its HF config."""

    def __init__(self, config):
        self.vocab = config["vocab_size"]
        self.hidden = config["hidden_size"]
        self.num_layers = config["num_hidden_layers"]
        self.num_heads = config["num_attention_heads"]
        self.num_kv_heads = config.get("num_key_value_heads", self.num_heads)
        self.head_dim = config.get("head_dim") or self.hidden // self.num_heads
        self.inter = config["intermediate_size"]
        self.rope_theta = float(config["rope_theta"])
        self.eps = float(config["rms_norm_eps"])
        self.tied = bool(config.get("tie_word_embeddings", False))
        arch = config["architectures"][0]
        assert arch in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"), arch
        self.qkv_bias = arch == "Qwen2ForCausalLM"     # Qwen2 always has q/k/v biases
        self.qk_norm = arch == "Qwen3ForCausalLM"      # Qwen3 always has q_norm / k_norm
        assert not config.get("attention_bias", False) and not config.get("mlp_bias", False)
        # Sliding window (Qwen2 / Qwen3 keys): off unless use_sliding_window; then a layer uses
        # it when layer_types says "sliding_attention", or without layer_types when its index is
        # >= max_window_layers (28 when absent). windows[i] = 0 is full attention.
        self.windows = [0] * self.num_layers
        if config.get("use_sliding_window", False):
            types = config.get("layer_types")
            first = config.get("max_window_layers", 28)
            for i in range(self.num_layers):
                sliding = types[i] == "sliding_attention" if types else i >= first
                self.windows[i] = config["sliding_window"] if sliding else 0
        self.rope_scaling = config.get("rope_scaling")
        self.inv_freq = rope_inv_freq(self.rope_theta, self.head_dim, self.rope_scaling)
        assert self.num_heads % self.num_kv_heads == 0
        assert self.head_dim % 2 == 0


def default_inv_freq(theta, d):
    """inv_freq[j] = theta^(-2j/d), j < d/2, float64 [d/2]."""
    return theta ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)


def rope_inv_freq(theta, d, scaling):
    """The RoPE frequencies after rope_scaling (None, "default", "linear" or "llama3")."""
    inv_freq = default_inv_freq(theta, d)
    if scaling is None:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if kind == "linear":
        # Position p is treated as p / factor: every angle, so every frequency, shrinks.
        return inv_freq / factor
    assert kind == "llama3", kind
    original = float(scaling["original_max_position_embeddings"])
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    out = inv_freq.clone()
    for j, f in enumerate(inv_freq.tolist()):
        wavelength = 2 * math.pi / f
        if wavelength < original / high:          # many turns over the original context: keep
            out[j] = f
        elif wavelength > original / low:         # under a turn or so: interpolate fully
            out[j] = f / factor
        else:                                     # in between: blend linearly in 1/wavelength
            s = (original / wavelength - low) / (high - low)
            out[j] = (1 - s) * f / factor + s * f
    return out


def weight_shapes(shape):
    """Hugging Face tensor names and shapes, in module order (the order weights are drawn in)."""
    s = shape
    out = [("model.embed_tokens.weight", [s.vocab, s.hidden])]
    for i in range(s.num_layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", [s.hidden]),
            (p + "self_attn.q_proj.weight", [s.num_heads * s.head_dim, s.hidden]),
            (p + "self_attn.k_proj.weight", [s.num_kv_heads * s.head_dim, s.hidden]),
            (p + "self_attn.v_proj.weight", [s.num_kv_heads * s.head_dim, s.hidden]),
            (p + "self_attn.o_proj.weight", [s.hidden, s.num_heads * s.head_dim]),
        ]
        if s.qkv_bias:
            out += [
                (p + "self_attn.q_proj.bias", [s.num_heads * s.head_dim]),
                (p + "self_attn.k_proj.bias", [s.num_kv_heads * s.head_dim]),
                (p + "self_attn.v_proj.bias", [s.num_kv_heads * s.head_dim]),
            ]
        if s.qk_norm:
            out += [
                (p + "self_attn.q_norm.weight", [s.head_dim]),
                (p + "self_attn.k_norm.weight", [s.head_dim]),
            ]
        out += [
            (p + "post_attention_layernorm.weight", [s.hidden]),
            (p + "mlp.gate_proj.weight", [s.inter, s.hidden]),
            (p + "mlp.up_proj.weight", [s.inter, s.hidden]),
            (p + "mlp.down_proj.weight", [s.hidden, s.inter]),
        ]
    out.append(("model.norm.weight", [s.hidden]))
    if not s.tied:
        out.append(("lm_head.weight", [s.vocab, s.hidden]))
    return out


def make_weights(shape, seed):
    """Random float32 weights {name: tensor}, drawn in module order from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, dims in weight_shapes(shape):
        weights[name] = random_weight(gen, name, dims, MATRIX_STD)
    return weights


# ----------------------------------------------------------------------------------------------
# Reference forward pass (float64)


def as_inv_freq(freqs, d):
    """freqs is inv_freq [d/2] or a plain base theta (as hybrid_s4.py passes)."""
    return freqs if torch.is_tensor(freqs) else default_inv_freq(float(freqs), d)


def rope_half_split(x, positions, freqs):
    """x: [T, n, d]; rotates pairs (j, j + d/2) by pos * inv_freq[j]. freqs: inv_freq [d/2] or
    the base theta (inv_freq[j] = theta^(-2j/d))."""
    d = x.shape[-1]
    half = d // 2
    inv_freq = as_inv_freq(freqs, d)
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]          # [T, d/2]
    cos = torch.cos(angle)[:, None, :]                                         # [T, 1, d/2]
    sin = torch.sin(angle)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]                                      # [T, n, d/2]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)       # [T, n, d]




def gqa_attention(q, k, v, q_offset=0, window=0):
    """q: [Tq, H, d], k, v: [Tk, G, d] -> [Tq, H*d]. Query head h reads kv head h // (H / G).

    Query i sits at position q_offset + i; key j at position j. With window > 0 a query at p
    sees only keys at p - window < j <= p.
    """
    t_q, num_heads, d = q.shape
    num_kv = k.shape[1]
    group = num_heads // num_kv
    mask = causal_mask(t_q, k.shape[0], q_offset)
    if window > 0:
        qpos = torch.arange(t_q)[:, None] + q_offset
        kpos = torch.arange(k.shape[0])[None, :]
        mask = mask & (kpos > qpos - window)
    out = torch.empty(t_q, num_heads, d, dtype=q.dtype)
    for h in range(num_heads):
        g = h // group
        scores = (q[:, h, :] @ k[:, g, :].T) / math.sqrt(d)                    # [Tq, Tk]
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out[:, h, :] = probs @ v[:, g, :]                                      # [Tq, d]
    return out.reshape(t_q, num_heads * d)


def mha_attention_explicit(q, k, v, window=0):
    """Plain MHA, every query head with its own K/V head: q, k, v: [T, H, d] -> [T, H*d]."""
    assert window == 0
    t, num_heads, d = q.shape
    assert k.shape[1] == num_heads
    scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(d)                 # [H, T, T]
    scores = scores.masked_fill(~causal_mask(t, t), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.einsum("hij,jhd->ihd", probs, v).reshape(t, num_heads * d)


def mqa_attention_explicit(q, k, v):
    """Plain MQA, one K/V head shared by all: q: [T, H, d], k, v: [T, 1, d] -> [T, H*d]."""
    t, num_heads, d = q.shape
    assert k.shape[1] == 1
    scores = torch.einsum("ihd,jd->hij", q, k[:, 0]) / math.sqrt(d)            # [H, T, T]
    scores = scores.masked_fill(~causal_mask(t, t), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.einsum("hij,jd->ihd", probs, v[:, 0]).reshape(t, num_heads * d)


def project_qkv(s, w, p, x, positions, rope=rope_half_split, inv_freq=None, bias=True,
                qk_norm=True):
    """Layer prefix p's queries, keys and values for x [T, hidden] at positions [T]:
    q [T, H, d], k and v [T, G, d], q and k rotated. bias / qk_norm / inv_freq are switches
    for the sensitivity checks only."""
    t = x.shape[0]
    q = x @ w[p + "self_attn.q_proj.weight"].T                                 # [T, H*d]
    k = x @ w[p + "self_attn.k_proj.weight"].T                                 # [T, G*d]
    v = x @ w[p + "self_attn.v_proj.weight"].T                                 # [T, G*d]
    if s.qkv_bias and bias:
        q = q + w[p + "self_attn.q_proj.bias"]
        k = k + w[p + "self_attn.k_proj.bias"]
        v = v + w[p + "self_attn.v_proj.bias"]
    q = q.reshape(t, s.num_heads, s.head_dim)
    k = k.reshape(t, s.num_kv_heads, s.head_dim)
    v = v.reshape(t, s.num_kv_heads, s.head_dim)
    if s.qk_norm and qk_norm:
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], s.eps)               # per head: [d]
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], s.eps)
    freqs = s.inv_freq if inv_freq is None else inv_freq
    return rope(q, positions, freqs), rope(k, positions, freqs), v


def forward(shape, w, ids, attention=gqa_attention, **qkv_options):
    """Full causal forward over ids ([T] int) at positions 0..T-1; returns logits [T, vocab]."""
    s = shape
    t = ids.shape[0]
    positions = torch.arange(t)
    h = w["model.embed_tokens.weight"][ids]                                    # [T, hidden]
    for i in range(s.num_layers):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], s.eps)                # [T, hidden]
        q, k, v = project_qkv(s, w, p, x, positions, **qkv_options)           # [T, H|G, d]
        o = attention(q, k, v, window=s.windows[i])                            # [T, H*d]
        h = h + o @ w[p + "self_attn.o_proj.weight"].T                         # [T, hidden]
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], s.eps)
        gate = x @ w[p + "mlp.gate_proj.weight"].T                             # [T, inter]
        up = x @ w[p + "mlp.up_proj.weight"].T                                 # [T, inter]
        h = h + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(h, w["model.norm.weight"], s.eps)                             # [T, hidden]
    head = w["model.embed_tokens.weight"] if s.tied else w["lm_head.weight"]   # [vocab, hidden]
    return x @ head.T                                                          # [T, vocab]


def forward_incremental(shape, w, ids):
    """Token-by-token decode with a growing KV cache; must equal forward() row by row."""
    s = shape
    k_cache = [torch.empty(0, s.num_kv_heads, s.head_dim, dtype=torch.float64)
               for _ in range(s.num_layers)]
    v_cache = [c.clone() for c in k_cache]
    rows = []
    for pos in range(ids.shape[0]):
        positions = torch.tensor([pos])
        h = w["model.embed_tokens.weight"][ids[pos:pos + 1]]                   # [1, hidden]
        for i in range(s.num_layers):
            p = f"model.layers.{i}."
            x = rms_norm(h, w[p + "input_layernorm.weight"], s.eps)
            q, k, v = project_qkv(s, w, p, x, positions)                       # [1, H|G, d]
            k_cache[i] = torch.cat([k_cache[i], k])                            # [pos+1, G, d]
            v_cache[i] = torch.cat([v_cache[i], v])
            o = gqa_attention(q, k_cache[i], v_cache[i], q_offset=pos,          # [1, H*d]
                              window=s.windows[i])
            h = h + o @ w[p + "self_attn.o_proj.weight"].T
            x = rms_norm(h, w[p + "post_attention_layernorm.weight"], s.eps)
            act = torch.nn.functional.silu(x @ w[p + "mlp.gate_proj.weight"].T)
            h = h + (act * (x @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = rms_norm(h, w["model.norm.weight"], s.eps)
        head = w["model.embed_tokens.weight"] if s.tied else w["lm_head.weight"]
        rows.append(x @ head.T)
    return torch.cat(rows)                                                     # [T, vocab]


# ----------------------------------------------------------------------------------------------
# Self-checks




def self_check_attention():
    gen = torch.Generator().manual_seed(7)
    t, h, d = 9, 6, 8
    q = torch.randn(t, h, d, generator=gen, dtype=torch.float64)
    k = torch.randn(t, h, d, generator=gen, dtype=torch.float64)
    v = torch.randn(t, h, d, generator=gen, dtype=torch.float64)
    # MHA == GQA with kv_heads == heads.
    assert close(gqa_attention(q, k, v), mha_attention_explicit(q, k, v)), "GQA(h groups) != MHA"
    # MQA == GQA with one kv head.
    k1, v1 = k[:, :1], v[:, :1]
    assert close(gqa_attention(q, k1, v1), mqa_attention_explicit(q, k1, v1)), "GQA(1) != MQA"
    # GQA with g kv heads == MHA over K/V heads repeated in contiguous blocks of h/g.
    for g in (2, 3):
        kg, vg = k[:, :g], v[:, :g]
        rep = h // g
        expanded = mha_attention_explicit(
            q, kg.repeat_interleave(rep, dim=1), vg.repeat_interleave(rep, dim=1))
        assert close(gqa_attention(q, kg, vg), expanded), f"GQA({g}) != repeated MHA"
    # Sliding window: each query row equals full attention over its own last `window` keys only.
    window = 3
    windowed = gqa_attention(q, k, v, window=window)
    for i in range(t):
        lo = max(0, i - window + 1)
        alone = gqa_attention(q[i:i + 1], k[lo:i + 1], v[lo:i + 1], q_offset=i - lo)
        assert close(windowed[i:i + 1], alone), f"window row {i}"
    assert not close(windowed, gqa_attention(q, k, v)), "window has no effect"
    # Causality: the first rows do not depend on later keys/values.
    k_mod, v_mod = k.clone(), v.clone()
    k_mod[5:] += 1.0
    v_mod[5:] -= 1.0
    assert close(gqa_attention(q, k, v)[:5], gqa_attention(q, k_mod, v_mod)[:5]), "not causal"


def self_check_model_mha_equivalence():
    """A whole model with kv_heads == heads: GQA attention == explicit MHA attention."""
    config = dict(FIXTURES["tiny_llama_gqa"]["config"], num_key_value_heads=4)
    shape = Shape(config)
    _, w = stored_weights(make_weights(shape, seed=11), "F32")
    ids = torch.randint(0, shape.vocab, (10,), generator=torch.Generator().manual_seed(12))
    assert close(forward(shape, w, ids), forward(shape, w, ids, attention=mha_attention_explicit))


def self_check_rope():
    gen = torch.Generator().manual_seed(8)
    d, theta = 8, default_inv_freq(10000.0, 8)
    q = torch.randn(1, 1, d, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 1, d, generator=gen, dtype=torch.float64)

    def score(m, n):
        qm = rope_half_split(q, torch.tensor([m]), theta)
        kn = rope_half_split(k, torch.tensor([n]), theta)
        return (qm * kn).sum().item()

    # (R_m q) . (R_n k) depends only on n - m; position 0 is the identity; norms are preserved.
    assert abs(score(3, 7) - score(10, 14)) < 1e-12 and abs(score(5, 2) - score(9, 6)) < 1e-12
    assert close(rope_half_split(q, torch.tensor([0]), theta), q)
    rotated = rope_half_split(q, torch.tensor([5]), theta)
    assert abs(rotated.norm().item() - q.norm().item()) < 1e-12
    # Pair (j, j + d/2) at position 1 with j = 0 rotates by exactly 1 radian.
    e = torch.zeros(1, 1, d, dtype=torch.float64)
    e[0, 0, 0] = 1.0
    r = rope_half_split(e, torch.tensor([1]), theta)[0, 0]
    assert abs(r[0].item() - math.cos(1.0)) < 1e-15
    assert abs(r[d // 2].item() - math.sin(1.0)) < 1e-15




def rope_interleaved(x, positions, freqs):
    """The other pair layout (2j, 2j + 1); used only to show the fixtures tell the two apart."""
    inv_freq = as_inv_freq(freqs, x.shape[-1])
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    cos, sin = torch.cos(angle)[:, None, :], torch.sin(angle)[:, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).reshape(x.shape)


def gqa_attention_modulo_map(q, k, v, window=0):
    """Wrong kv mapping h % G (interleaved groups) instead of h // (H / G)."""
    num_heads, num_kv = q.shape[1], k.shape[1]
    order = [h % num_kv for h in range(num_heads)]
    if window > 0:  # GQA with one kv head per query head is MHA (self_check_attention)
        return gqa_attention(q, k[:, order], v[:, order], window=window)
    return mha_attention_explicit(q, k[:, order], v[:, order])


def gqa_attention_wrong_scale(q, k, v, window=0):
    """Scores scaled by 1/d instead of 1/sqrt(d)."""
    d = q.shape[-1]
    return gqa_attention(q * (1.0 / math.sqrt(d)), k, v, window=window)


def gqa_attention_no_window(q, k, v, window=0):
    """Full causal attention where the config asks for a sliding window."""
    return gqa_attention(q, k, v)


def fixture_sensitivity(shape, w, ids, logits):
    """Max |logit difference| of each common mistake; all must move the logits visibly."""
    variants = {
        "interleaved_rope_pairs": dict(rope=rope_interleaved),
        "no_rope": dict(rope=lambda x, positions, inv_freq: x),
        "wrong_score_scale": dict(attention=gqa_attention_wrong_scale),
    }
    if 1 < shape.num_kv_heads < shape.num_heads:
        variants["kv_head_map_h_mod_g"] = dict(attention=gqa_attention_modulo_map)
    if shape.qkv_bias:
        variants["no_qkv_bias"] = dict(bias=False)
    if any(shape.windows):
        variants["no_sliding_window"] = dict(attention=gqa_attention_no_window)
    if shape.qk_norm:
        variants["no_qk_norm"] = dict(qk_norm=False)
    if shape.rope_scaling is not None:
        variants["no_rope_scaling"] = dict(
            inv_freq=default_inv_freq(shape.rope_theta, shape.head_dim))
        if shape.rope_scaling.get("rope_type") == "llama3":
            factor = shape.rope_scaling["factor"]
            variants["linear_instead_of_llama3"] = dict(
                inv_freq=default_inv_freq(shape.rope_theta, shape.head_dim) / factor)
    diffs = {}
    for name, kwargs in variants.items():
        diffs[name] = torch.max(torch.abs(forward(shape, w, ids, **kwargs) - logits)).item()
        assert diffs[name] > 0.05, f"fixture cannot detect {name}: max diff {diffs[name]}"
    return diffs


# ----------------------------------------------------------------------------------------------
# Fixture generation






def build_fixture(name, spec, out_dir, verbose):
    config = spec["config"]
    shape = Shape(config)
    stored, exact = stored_weights(make_weights(shape, spec["seed"]), spec["storage_dtype"])
    ids = input_ids(shape.vocab, spec["num_tokens"], spec["seed"] + 1)
    logits = forward(shape, exact, ids)                                        # [T, vocab] f64
    assert close(forward_incremental(shape, exact, ids), logits), "incremental != full"
    # Causal prefix consistency: a prefix's logits are the first rows of the full logits.
    assert close(forward(shape, exact, ids[:5]), logits[:5]), "prefix != full"
    diffs = fixture_sensitivity(shape, exact, ids, logits)

    d = pathlib.Path(out_dir) / name
    write_fixture_files(d, config, stored, ids, logits)

    # Read back what was written and make sure the reference reproduces it from the file alone.
    back = read_safetensors(d / "model.safetensors")
    reread = {}
    for tname, (dtype, array) in back.items():
        values = bf16_bits_to_float32(array) if dtype == "BF16" else array
        reread[tname] = torch.from_numpy(values.astype(np.float64))
    assert set(reread) == {n for n, _ in weight_shapes(shape)}
    assert close(forward(shape, reread, ids), logits, tol=0.0), "file does not reproduce logits"

    if verbose:
        probs = torch.softmax(logits, dim=-1)
        print(f"{d}:")
        for f in FIXTURE_FILES:
            print(f"  {f:22s} {(d / f).stat().st_size:6d} bytes")
        print(f"  input_ids {ids.tolist()}")
        print(f"  logits: std {logits.std().item():.3f}, max |.| {logits.abs().max().item():.3f}, "
              f"mean top-1 prob {probs.max(dim=-1).values.mean().item():.3f}")
        print("  max |logit change| under mistakes: "
              + ", ".join(f"{k} {v:.3f}" for k, v in diffs.items()))


def self_check_rope_scaling():
    """Llama 3.1 bands at d = 8, theta = 1e4 (inv_freq 1, 0.1, 0.01, 0.001; wavelengths 6.3, 63,
    628, 6283) with L0 = 64, factor 8, low 1, high 4: band edges 16 and 64, so frequency 0 is
    kept, 1 is blended with s = (64 / 62.83185 - 1) / 3 = 0.0061972, i.e. 1/80 + 0.0875 s, 2 and 3 are divided by 8."""
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    got = rope_inv_freq(10000.0, 8, llama3).tolist()
    want = [1.0, 0.013042256, 0.00125, 0.000125]
    assert all(abs(g - w) < 1e-9 for g, w in zip(got, want)), got
    linear = rope_inv_freq(10000.0, 8, {"type": "linear", "factor": 2.0}).tolist()
    assert all(abs(g - w) < 1e-15 for g, w in zip(linear, [0.5, 0.05, 0.005, 0.0005])), linear
    assert close(rope_inv_freq(10000.0, 8, {"rope_type": "default"}), default_inv_freq(1e4, 8))


def run_self_checks():
    self_check_attention()
    self_check_rope_scaling()
    self_check_model_mha_equivalence()
    self_check_rope()
    with tempfile.TemporaryDirectory() as tmp:
        self_check_safetensors_roundtrip(tmp)


def generate(out_dir, verbose):
    for name, spec in FIXTURES.items():
        build_fixture(name, spec, out_dir, verbose)


def main():
    return run_cli(__doc__, run_self_checks, generate, FIXTURES, "tools.reference.llama")


if __name__ == "__main__":
    sys.exit(main())
