"""Independent PyTorch reference for DeepSeek-V2 (MLA) models, and the test fixtures built from it.

Run only with /usr/bin/python3 (Debian's torch and numpy):

    /usr/bin/python3 -m tools.reference.deepseek_v2          # (re)write tiny_deepseek_v2_*/
    /usr/bin/python3 -m tools.reference.deepseek_v2 --check  # regenerate in a temp dir, compare
    /usr/bin/python3 -m tools.reference.deepseek_v2 --out-dir /tmp/fixtures

(from the repository root).

What it writes. For each fixture in FIXTURES, a directory <out-dir>/<name>/ holding:

  config.json           Hugging Face style DeepseekV2ForCausalLM config (keys sorted), every layer
                        dense (n_routed_experts null).
  model.safetensors     random F32 weights in Hugging Face tensor names and layouts.
  expected.safetensors  input_ids (I32, [T]) and logits (F32, [T, vocab]): the logits at every
                        position of one causal forward pass over input_ids, positions 0..T-1.

The forward pass is written from the DeepSeek-V2 equations (paper section 2.1 / appendix C, see
docs/math.md section 2.2), not from any other implementation, and runs in float64
on the exact stored float32 weight values; only the final logits are rounded to float32. With
H heads, n = qk_nope_head_dim, r = qk_rope_head_dim, v = v_head_dim, c = kv_lora_rank:

  h_0       = embed_tokens[ids]                                                  [T, hidden]
  per layer:
    x       = RMSNorm(h) * input_layernorm
    q       = x @ q_proj.T                                   (q_lora_rank null)  [T, H*(n+r)]
            = RMSNorm(x @ q_a_proj.T) * q_a_layernorm @ q_b_proj.T  (q_lora_rank set)
              per head h: q[h*(n+r) : h*(n+r)+n] = q^C_h, the next r dims = q^R_h (pre-RoPE)
    kv_a    = x @ kv_a_proj_with_mqa.T = [c^KV (c) | k^R (r)]                    [T, c + r]
    c^KV    = RMSNorm(c^KV) * kv_a_layernorm      (what the latent cache holds; k^R is NOT normed)
    q^R,k^R = RoPE with interleaved pairs (2j, 2j+1) rotated by pos * inv_freq[j]
              (YaRN inv_freq and cos/sin multiplier when rope_scaling is set)
    kv_b    = c^KV @ kv_b_proj.T; per head h a block of (n + v): k^C_h (n dims), then v^C_h (v)
    score   = (q^C_h . k^C_h + q^R_h . k^R) * softmax_scale, causal
              softmax_scale = 1/sqrt(n + r), times get_mscale(s, mscale_all_dim)^2 under YaRN
    o_h     = softmax(score) @ v^C_h;  h = h + concat_h(o_h) @ o_proj.T
    x       = RMSNorm(h) * post_attention_layernorm
    h       = h + (silu(x @ gate_proj.T) * (x @ up_proj.T)) @ down_proj.T
  logits    = RMSNorm(h) * model.norm @ lm_head.T

That is the expanded (MHA-like) form. The script also computes every layer's attention in the
absorbed (MQA-like) form -- latent query (W^UK_h)^T q^C_h, scores against the cached c^KV,
latent output sum_j p_j c^KV_j, then W^UV_h, each matmul applied in sequence and never
pre-multiplied -- and asserts both agree to 1e-9 (float64) on every layer of every forward.

Determinism: weights and input ids come from torch.Generator with fixed seeds, tensors are written
in sorted-name order and the JSON headers have a fixed key order, so two runs with the same torch
build give byte-identical files.

Self-checks, run before anything is written: absorbed == expanded attention (every layer), a
token-by-token decode with a latent cache [c^KV | k^R] reproduces the full forward, prefix logits
equal the first rows of the full logits, interleaved RoPE equals the de-interleave / rotate-half /
re-interleave formulation and depends only on relative position, the YaRN inv_freq differs from
the plain one exactly on the ramp, the YaRN mscale reproduces the paper's numbers, the safetensors
writer round-trips, the written files reproduce the logits, and each fixture's logits change
materially under common implementation mistakes (NeoX half-split RoPE pairing being the main one).
"""

import json
import math
import pathlib
import sys
import tempfile

import torch

# The round-trip self-check below re-verifies common's hand-written safetensors writer.
from .common import (
    FIXTURE_FILES,
    causal_mask,
    close,
    exact_weights,
    input_ids,
    fan_in_weight,
    reread_f32_weights,
    rms_norm,
    run_cli,
    self_check_safetensors_roundtrip,
    write_fixture_files,
)



def _config(**overrides):
    base = {
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 128,
        "bos_token_id": 0,
        "eos_token_id": 1,
        # Mixture-of-experts fields set so that every layer is a dense MLP.
        "n_routed_experts": None,
        "first_k_dense_replace": 0,
        "moe_layer_freq": 1,
    }
    base.update(overrides)
    base["num_key_value_heads"] = base["num_attention_heads"]  # Irrelevant for MLA.
    return base


# Fixture definitions. `config` is written verbatim to config.json; `seed` drives the weights
# (seed) and the input ids (seed + 1); `matrix_gain` sets the weight scale (std = gain/sqrt(fan_in)).
FIXTURES = {
    "tiny_deepseek_v2_mla": {
        "seed": 20240611,
        "num_tokens": 12,
        "matrix_gain": 1.2,
        "config": _config(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            q_lora_rank=None,
            kv_lora_rank=16,
            qk_nope_head_dim=8,
            qk_rope_head_dim=4,
            v_head_dim=8,
            rope_scaling=None,
        ),
    },
    "tiny_deepseek_v2_mla_qlora_yarn": {
        "seed": 20240617,
        "num_tokens": 12,
        "matrix_gain": 1.2,
        "config": _config(
            vocab_size=64,
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=3,
            q_lora_rank=12,
            kv_lora_rank=12,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=6,
            # original_max_position_embeddings 4096 (DeepSeek-V2's own value) with theta 10000
            # and rope dim 8 puts the YaRN ramp at low 1, high 3: frequency 0 and 1 are
            # extrapolated (kept), 2 is blended half/half, 3 is interpolated (divided by 4).
            # With beta_fast 32, low >= 1 needs L0 >= 2*pi*32 * theta^(2/d) ~ 2011 here (for
            # any theta, L0 > 2*pi*32 ~ 201), and high <= 3 needs L0 <= 2*pi * theta^(6/d) ~ 6283.
            rope_scaling={
                "type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 4096,
                "beta_fast": 32,
                "beta_slow": 1,
                "mscale": 0.707,
                "mscale_all_dim": 0.707,
            },
        ),
    },
}

EMBED_STD = 1.0


# ----------------------------------------------------------------------------------------------
# Model shape


class Shape:
    """The dimensions of a DeepSeek-V2 model, derived from its HF config."""

    def __init__(self, config):
        self.vocab = config["vocab_size"]
        self.hidden = config["hidden_size"]
        self.inter = config["intermediate_size"]
        self.num_layers = config["num_hidden_layers"]
        self.num_heads = config["num_attention_heads"]
        self.q_lora = config.get("q_lora_rank")  # None: plain q_proj.
        self.kv_lora = config["kv_lora_rank"]
        self.nope = config["qk_nope_head_dim"]
        self.rope = config["qk_rope_head_dim"]
        self.v = config["v_head_dim"]
        self.rope_theta = float(config["rope_theta"])
        self.eps = float(config["rms_norm_eps"])
        self.rope_scaling = config.get("rope_scaling")
        assert self.rope % 2 == 0
        assert not config.get("tie_word_embeddings", False)
        assert not config.get("n_routed_experts")


def weight_shapes(shape):
    """Hugging Face tensor names and shapes, in module order (the order weights are drawn in)."""
    s = shape
    qk = s.nope + s.rope
    out = [("model.embed_tokens.weight", [s.vocab, s.hidden])]
    for i in range(s.num_layers):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", [s.hidden]))
        if s.q_lora is None:
            out.append((p + "self_attn.q_proj.weight", [s.num_heads * qk, s.hidden]))
        else:
            out += [
                (p + "self_attn.q_a_proj.weight", [s.q_lora, s.hidden]),
                (p + "self_attn.q_a_layernorm.weight", [s.q_lora]),
                (p + "self_attn.q_b_proj.weight", [s.num_heads * qk, s.q_lora]),
            ]
        out += [
            (p + "self_attn.kv_a_proj_with_mqa.weight", [s.kv_lora + s.rope, s.hidden]),
            (p + "self_attn.kv_a_layernorm.weight", [s.kv_lora]),
            (p + "self_attn.kv_b_proj.weight", [s.num_heads * (s.nope + s.v), s.kv_lora]),
            (p + "self_attn.o_proj.weight", [s.hidden, s.num_heads * s.v]),
            (p + "post_attention_layernorm.weight", [s.hidden]),
            (p + "mlp.gate_proj.weight", [s.inter, s.hidden]),
            (p + "mlp.up_proj.weight", [s.inter, s.hidden]),
            (p + "mlp.down_proj.weight", [s.hidden, s.inter]),
        ]
    out.append(("model.norm.weight", [s.hidden]))
    out.append(("lm_head.weight", [s.vocab, s.hidden]))
    return out


def make_weights(shape, seed, matrix_gain):
    """Random float32 weights {name: tensor}, drawn in module order from one seeded generator.

    Norm weights are 1 + N(0, 0.1^2); the embedding is N(0, 1); every linear weight [out, in] is
    N(0, (gain / sqrt(in))^2), so activations keep an O(1) scale through each projection.
    """
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, dims in weight_shapes(shape):
        weights[name] = fan_in_weight(gen, name, dims, matrix_gain, EMBED_STD)
    return weights


# ----------------------------------------------------------------------------------------------
# RoPE and YaRN


def yarn_get_mscale(scale, mscale):
    return 0.1 * mscale * math.log(scale) + 1.0 if scale > 1 else 1.0


def yarn_correction_dim(num_rotations, dim, base, original_max_pos):
    """The frequency index j (inv_freq[j] = base^(-2j/d)) whose wavelength fits num_rotations
    full turns into original_max_pos positions: d * ln(L0 / (r * 2 pi)) / (2 ln base)."""
    return dim * math.log(original_max_pos / (num_rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_range(shape):
    """(low, high) of the YaRN ramp, as DeepSeek-V2 defines them."""
    rs, d = shape.rope_scaling, shape.rope
    l0 = rs["original_max_position_embeddings"]
    low = math.floor(yarn_correction_dim(rs["beta_fast"], d, shape.rope_theta, l0))
    high = math.ceil(yarn_correction_dim(rs["beta_slow"], d, shape.rope_theta, l0))
    return max(low, 0), min(high, d - 1)


def base_inv_freq(shape):
    d = shape.rope
    return shape.rope_theta ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)  # [d/2]


class Rope:
    """inv_freq [d/2], the cos/sin multiplier and the softmax scale of one model."""

    def __init__(self, shape, use_yarn_freq=True, use_softmax_mscale=True):
        base = base_inv_freq(shape)
        self.softmax_scale = 1.0 / math.sqrt(shape.nope + shape.rope)
        self.cos_sin_mult = 1.0
        self.ramp = None
        self.inv_freq = base
        rs = shape.rope_scaling
        if rs is None:
            return
        assert rs["type"] == "yarn"
        s = float(rs["factor"])
        low, high = yarn_range(shape)
        self.low, self.high = low, high
        hi = high + 0.001 if high == low else high
        j = torch.arange(shape.rope // 2, dtype=torch.float64)
        self.ramp = torch.clamp((j - low) / (hi - low), 0.0, 1.0)
        extrapolation_mask = 1.0 - self.ramp
        if use_yarn_freq:
            self.inv_freq = (base / s) * (1.0 - extrapolation_mask) + base * extrapolation_mask
        self.mscale = yarn_get_mscale(s, float(rs.get("mscale", 1.0)))
        mad = float(rs.get("mscale_all_dim", 0.0))
        self.mscale_all_dim = yarn_get_mscale(s, mad)
        self.cos_sin_mult = self.mscale / self.mscale_all_dim
        if mad and use_softmax_mscale:
            self.softmax_scale *= self.mscale_all_dim ** 2

    def cos_sin(self, positions):
        angle = positions.to(torch.float64)[:, None] * self.inv_freq[None, :]    # [T, d/2]
        return (torch.cos(angle) * self.cos_sin_mult)[:, None, :], \
               (torch.sin(angle) * self.cos_sin_mult)[:, None, :]                # [T, 1, d/2]


def rope_interleaved(x, positions, rope):
    """x: [T, n, d]; rotates pairs (2j, 2j+1) by pos * inv_freq[j]; output in the same order."""
    cos, sin = rope.cos_sin(positions)
    x1, x2 = x[..., 0::2], x[..., 1::2]                                          # [T, n, d/2]
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).reshape(x.shape)


def rope_half_split(x, positions, rope):
    """NeoX pairing (j, j + d/2): the wrong layout for DeepSeek-V2 checkpoints (checks only)."""
    cos, sin = rope.cos_sin(positions)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


# ----------------------------------------------------------------------------------------------
# Reference forward pass (float64)


class Options:
    """Implementation choices; the defaults are the correct model, the rest are deliberate
    mistakes used to show that the fixtures detect them."""

    def __init__(self, rope_fn=rope_interleaved, use_yarn_freq=True, use_softmax_mscale=True,
                 score_dim=None, skip_kv_a_layernorm=False, skip_q_a_layernorm=False,
                 kv_b_blocked=False, rope_on_nope=False):
        self.rope_fn = rope_fn
        self.use_yarn_freq = use_yarn_freq
        self.use_softmax_mscale = use_softmax_mscale
        self.score_dim = score_dim                  # Scale by 1/sqrt(score_dim) if set.
        self.skip_kv_a_layernorm = skip_kv_a_layernorm
        self.skip_q_a_layernorm = skip_q_a_layernorm
        self.kv_b_blocked = kv_b_blocked            # [all heads' k^C | all heads' v^C] rows.
        self.rope_on_nope = rope_on_nope            # q^R taken from the first r dims of a head.


CORRECT = Options()


def make_rope(shape, opts):
    rope = Rope(shape, opts.use_yarn_freq, opts.use_softmax_mscale)
    if opts.score_dim is not None:
        rope.softmax_scale = 1.0 / math.sqrt(opts.score_dim)
    return rope


def mla_project(shape, w, p, x, positions, rope, opts):
    """Per-token projections of one layer: q^C [T, H, n], q^R [T, H, r] (post-RoPE),
    c^KV [T, c] (post-norm) and k^R [T, r] (post-RoPE) -- the latter two are the latent cache."""
    s = shape
    t = x.shape[0]
    if s.q_lora is None:
        q = x @ w[p + "self_attn.q_proj.weight"].T                               # [T, H*(n+r)]
    else:
        cq = x @ w[p + "self_attn.q_a_proj.weight"].T                            # [T, q_lora]
        if not opts.skip_q_a_layernorm:
            cq = rms_norm(cq, w[p + "self_attn.q_a_layernorm.weight"], s.eps)
        q = cq @ w[p + "self_attn.q_b_proj.weight"].T                            # [T, H*(n+r)]
    q = q.reshape(t, s.num_heads, s.nope + s.rope)
    if opts.rope_on_nope:
        q_nope, q_pe = q[..., s.rope:], q[..., :s.rope]
    else:
        q_nope, q_pe = q[..., :s.nope], q[..., s.nope:]                          # [T,H,n], [T,H,r]
    q_pe = opts.rope_fn(q_pe, positions, rope)
    kv_a = x @ w[p + "self_attn.kv_a_proj_with_mqa.weight"].T                    # [T, c + r]
    c_kv = kv_a[:, :s.kv_lora]
    if not opts.skip_kv_a_layernorm:
        c_kv = rms_norm(c_kv, w[p + "self_attn.kv_a_layernorm.weight"], s.eps)   # [T, c]
    k_pe = opts.rope_fn(kv_a[:, None, s.kv_lora:], positions, rope)[:, 0]        # [T, r]
    return q_nope, q_pe, c_kv, k_pe


def kv_b_heads(shape, w, p, opts):
    """W^UK [H, n, c] and W^UV [H, v, c]: per-head row blocks of kv_b_proj [H*(n+v), c]."""
    s = shape
    kv_b = w[p + "self_attn.kv_b_proj.weight"]
    if opts.kv_b_blocked:
        w_uk = kv_b[:s.num_heads * s.nope].reshape(s.num_heads, s.nope, s.kv_lora)
        w_uv = kv_b[s.num_heads * s.nope:].reshape(s.num_heads, s.v, s.kv_lora)
        return w_uk, w_uv
    blocks = kv_b.reshape(s.num_heads, s.nope + s.v, s.kv_lora)
    return blocks[:, :s.nope, :], blocks[:, s.nope:, :]


def attention_expanded(shape, w_uk, w_uv, q_nope, q_pe, c_kv, k_pe, scale, q_offset=0,
                       stats=None):
    """MHA form: per-head keys [k^C_h | k^R] of size n + r and values v^C_h, from c^KV."""
    s = shape
    t_q, t_k = q_nope.shape[0], c_kv.shape[0]
    k_nope = torch.einsum("hnc,jc->jhn", w_uk, c_kv)                              # [Tk, H, n]
    v = torch.einsum("hvc,jc->jhv", w_uv, c_kv)                                   # [Tk, H, v]
    q = torch.cat([q_nope, q_pe], dim=-1)                                         # [Tq, H, n+r]
    k = torch.cat([k_nope, k_pe[:, None, :].expand(t_k, s.num_heads, s.rope)], dim=-1)
    scores = torch.einsum("ihd,jhd->hij", q, k) * scale                          # [H, Tq, Tk]
    scores = scores.masked_fill(~causal_mask(t_q, t_k, q_offset), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if stats is not None:
        stats.append(probs)
    return torch.einsum("hij,jhv->ihv", probs, v).reshape(t_q, s.num_heads * s.v)


def attention_absorbed(shape, w_uk, w_uv, q_nope, q_pe, c_kv, k_pe, scale, q_offset=0):
    """MQA form over the latent cache [c^KV | k^R]: W^UK on the query side, W^UV after the
    attention, each applied in sequence (never pre-multiplied into one matrix)."""
    s = shape
    t_q, t_k = q_nope.shape[0], c_kv.shape[0]
    mask = causal_mask(t_q, t_k, q_offset)
    out = torch.empty(t_q, s.num_heads, s.v, dtype=torch.float64)
    for h in range(s.num_heads):
        q_lat = q_nope[:, h, :] @ w_uk[h]                                        # [Tq, c]
        scores = (q_lat @ c_kv.T + q_pe[:, h, :] @ k_pe.T) * scale               # [Tq, Tk]
        probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        o_lat = probs @ c_kv                                                     # [Tq, c]
        out[:, h, :] = o_lat @ w_uv[h].T                                         # [Tq, v]
    return out.reshape(t_q, s.num_heads * s.v)


ABSORBED_TOL = 1e-9
_max_absorbed_diff = [0.0]  # Largest |absorbed - expanded| seen, for the report.


def mlp_and_residual(shape, w, p, h):
    x = rms_norm(h, w[p + "post_attention_layernorm.weight"], shape.eps)
    gate = x @ w[p + "mlp.gate_proj.weight"].T                                   # [T, inter]
    up = x @ w[p + "mlp.up_proj.weight"].T
    return h + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T


def final_logits(shape, w, h):
    x = rms_norm(h, w["model.norm.weight"], shape.eps)
    return x @ w["lm_head.weight"].T                                             # [T, vocab]


def forward(shape, w, ids, opts=CORRECT, form="expanded", stats=None):
    """Full causal forward over ids ([T] int) at positions 0..T-1; returns logits [T, vocab].

    Every layer computes its attention in both forms and asserts they agree to ABSORBED_TOL;
    `form` picks which one feeds the residual stream.
    """
    s = shape
    t = ids.shape[0]
    positions = torch.arange(t)
    rope = make_rope(s, opts)
    h = w["model.embed_tokens.weight"][ids]                                      # [T, hidden]
    for i in range(s.num_layers):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], s.eps)
        q_nope, q_pe, c_kv, k_pe = mla_project(s, w, p, x, positions, rope, opts)
        w_uk, w_uv = kv_b_heads(s, w, p, opts)
        o_exp = attention_expanded(s, w_uk, w_uv, q_nope, q_pe, c_kv, k_pe,
                                   rope.softmax_scale, stats=stats)
        o_abs = attention_absorbed(s, w_uk, w_uv, q_nope, q_pe, c_kv, k_pe, rope.softmax_scale)
        diff = torch.max(torch.abs(o_exp - o_abs)).item()
        assert diff <= ABSORBED_TOL, f"layer {i}: absorbed != expanded (max diff {diff:.3g})"
        _max_absorbed_diff[0] = max(_max_absorbed_diff[0], diff)
        o = o_exp if form == "expanded" else o_abs                               # [T, H*v]
        h = h + o @ w[p + "self_attn.o_proj.weight"].T
        h = mlp_and_residual(s, w, p, h)
    return final_logits(s, w, h)


def forward_incremental(shape, w, ids):
    """Token-by-token decode with a latent cache [c^KV | k^R] per layer (one shared head of
    width c + r) and absorbed attention; must equal forward() row by row."""
    s = shape
    rope = make_rope(s, CORRECT)
    cache = [torch.empty(0, s.kv_lora + s.rope, dtype=torch.float64) for _ in range(s.num_layers)]
    rows = []
    for pos in range(ids.shape[0]):
        positions = torch.tensor([pos])
        h = w["model.embed_tokens.weight"][ids[pos:pos + 1]]                     # [1, hidden]
        for i in range(s.num_layers):
            p = f"model.layers.{i}."
            x = rms_norm(h, w[p + "input_layernorm.weight"], s.eps)
            q_nope, q_pe, c_kv, k_pe = mla_project(s, w, p, x, positions, rope, CORRECT)
            cache[i] = torch.cat([cache[i], torch.cat([c_kv, k_pe], dim=-1)])    # [pos+1, c+r]
            w_uk, w_uv = kv_b_heads(s, w, p, CORRECT)
            o = attention_absorbed(s, w_uk, w_uv, q_nope, q_pe, cache[i][:, :s.kv_lora],
                                   cache[i][:, s.kv_lora:], rope.softmax_scale, q_offset=pos)
            h = h + o @ w[p + "self_attn.o_proj.weight"].T
            h = mlp_and_residual(s, w, p, h)
        rows.append(final_logits(s, w, h))
    return torch.cat(rows)                                                       # [T, vocab]


# ----------------------------------------------------------------------------------------------
# Self-checks


class _Dims:
    """A bare shape for RoPE checks."""

    def __init__(self, d, theta, rope_scaling=None, nope=8):
        self.rope, self.rope_theta, self.rope_scaling, self.nope = d, theta, rope_scaling, nope


def self_check_rope():
    gen = torch.Generator().manual_seed(8)
    d = 8
    rope = Rope(_Dims(d, 10000.0))
    q = torch.randn(1, 1, d, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 1, d, generator=gen, dtype=torch.float64)

    def score(m, n):
        return (rope_interleaved(q, torch.tensor([m]), rope)
                * rope_interleaved(k, torch.tensor([n]), rope)).sum().item()

    # (R_m q) . (R_n k) depends only on n - m; position 0 is the identity; norms are preserved.
    assert abs(score(3, 7) - score(10, 14)) < 1e-12 and abs(score(5, 2) - score(9, 6)) < 1e-12
    assert close(rope_interleaved(q, torch.tensor([0]), rope), q)
    assert abs(rope_interleaved(q, torch.tensor([5]), rope).norm().item()
               - q.norm().item()) < 1e-12
    # Pair (0, 1) at position 1 rotates by exactly inv_freq[0] = 1 radian.
    e = torch.zeros(1, 1, d, dtype=torch.float64)
    e[0, 0, 0] = 1.0
    r = rope_interleaved(e, torch.tensor([1]), rope)[0, 0]
    assert abs(r[0].item() - math.cos(1.0)) < 1e-15 and abs(r[1].item() - math.sin(1.0)) < 1e-15
    assert torch.count_nonzero(r[2:]).item() == 0
    # Interleaved pairs == de-interleave (evens then odds), rotate-half pairing, re-interleave.
    # This is how the layout gotcha reads in code that de-interleaves before rotate_half.
    x = torch.randn(5, 3, d, generator=gen, dtype=torch.float64)
    pos = torch.arange(5) * 3 + 1
    perm = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])
    via_half = torch.empty_like(x)
    via_half[..., perm] = rope_half_split(x[..., perm], pos, rope)
    assert close(rope_interleaved(x, pos, rope), via_half)
    # ...and the two pairings on the same (interleaved) data really differ.
    assert torch.max(torch.abs(rope_interleaved(x, pos, rope) - rope_half_split(x, pos, rope))) > 0.1


def self_check_yarn():
    # The paper's numbers (section 3.1.4): sqrt(t) = 0.0707 ln s + 1 = 1.26080 at s = 40, and the
    # softmax scale 1/sqrt(192) * 1.26080^2 = 0.114721.
    m = yarn_get_mscale(40.0, 0.707)
    assert abs(m - 1.26080) < 5e-6, m
    assert abs(m * m / math.sqrt(192) - 0.114721) < 5e-7
    assert yarn_get_mscale(1.0, 0.707) == 1.0
    # Every fixture with YaRN: inv_freq equals the plain one exactly where the ramp is 0
    # (extrapolated), equals plain / factor exactly where it is 1 (interpolated) and lies strictly
    # between them in between; the ramp must be non-trivial: 0 < low < high < d/2.
    for name, spec in FIXTURES.items():
        shape = Shape(spec["config"])
        if shape.rope_scaling is None:
            continue
        rope = Rope(shape)
        base = base_inv_freq(shape)
        s = float(shape.rope_scaling["factor"])
        low, high = rope.low, rope.high
        assert 0 < low < high < shape.rope // 2, f"{name}: trivial YaRN ramp ({low}, {high})"
        kinds = []
        for j in range(shape.rope // 2):
            f, b = rope.inv_freq[j].item(), base[j].item()
            if j <= low:
                assert f == b, (name, j)
                kinds.append("extrapolated")
            elif j >= high:
                assert f == b / s, (name, j)
                kinds.append("interpolated")
            else:
                assert b / s < f < b, (name, j)
                kinds.append("blended")
        assert {"extrapolated", "interpolated", "blended"} <= set(kinds), kinds
        # Plain RoPE (no scaling) keeps base_inv_freq and a multiplier of 1.
        plain = Rope(_Dims(shape.rope, shape.rope_theta))
        assert torch.equal(plain.inv_freq, base) and plain.cos_sin_mult == 1.0


def self_check_absorbed_random():
    """Absorbed == expanded on random tensors of a wider latent than any fixture, with offsets."""
    gen = torch.Generator().manual_seed(10)
    s = _Dims(6, 10000.0, nope=10)
    s.num_heads, s.kv_lora, s.v = 5, 24, 7
    t_k, t_q = 9, 3

    def rnd(*dims):
        return torch.randn(*dims, generator=gen, dtype=torch.float64)

    w_uk, w_uv = rnd(5, 10, 24), rnd(5, 7, 24)
    q_nope, q_pe, c_kv, k_pe = rnd(t_q, 5, 10), rnd(t_q, 5, 6), rnd(t_k, 24), rnd(t_k, 6)
    for off in (0, t_k - t_q):
        a = attention_expanded(s, w_uk, w_uv, q_nope, q_pe, c_kv, k_pe, 0.2, q_offset=off)
        b = attention_absorbed(s, w_uk, w_uv, q_nope, q_pe, c_kv, k_pe, 0.2, q_offset=off)
        assert torch.max(torch.abs(a - b)).item() <= ABSORBED_TOL


def run_self_checks():
    self_check_rope()
    self_check_yarn()
    self_check_absorbed_random()
    with tempfile.TemporaryDirectory() as tmp:
        self_check_safetensors_roundtrip(tmp)


# ----------------------------------------------------------------------------------------------
# Fixture generation


def mistakes(shape):
    """Common implementation mistakes, each of which the fixture must detect."""
    s = shape
    out = {
        "neox_half_split_rope": Options(rope_fn=rope_half_split),
        "no_rope": Options(rope_fn=lambda x, positions, rope: x),
        "kv_a_layernorm_skipped": Options(skip_kv_a_layernorm=True),
        "kv_b_blocked_layout": Options(kv_b_blocked=True),
        "q_rope_dims_first": Options(rope_on_nope=True),
        "scale_1/sqrt(kv_lora+rope)": Options(score_dim=s.kv_lora + s.rope),
    }
    if s.q_lora is not None:
        out["q_a_layernorm_skipped"] = Options(skip_q_a_layernorm=True)
    if s.rope_scaling is not None:
        out["plain_rope_freq"] = Options(use_yarn_freq=False)
        out["no_softmax_mscale"] = Options(use_softmax_mscale=False)
    return out


# A float32 engine lands about 1e-5 from the logits; a mistake must move them far more than that.
MISTAKE_MIN_DIFF = {"plain_rope_freq": 1e-3}
MISTAKE_DEFAULT_MIN_DIFF = 0.05


def fixture_sensitivity(shape, w, ids, logits):
    diffs = {}
    for name, opts in mistakes(shape).items():
        diffs[name] = torch.max(torch.abs(forward(shape, w, ids, opts) - logits)).item()
        floor = MISTAKE_MIN_DIFF.get(name, MISTAKE_DEFAULT_MIN_DIFF)
        assert diffs[name] > floor, f"fixture cannot detect {name}: max diff {diffs[name]}"
    return diffs


def build_fixture(name, spec, out_dir, verbose):
    config = spec["config"]
    shape = Shape(config)
    weights = make_weights(shape, spec["seed"], spec["matrix_gain"])
    exact = exact_weights(weights)
    ids = input_ids(shape.vocab, spec["num_tokens"], spec["seed"] + 1)
    stats = []
    logits = forward(shape, exact, ids, stats=stats)                             # [T, vocab] f64
    assert close(forward(shape, exact, ids, form="absorbed"), logits, tol=1e-9), \
        "absorbed forward != expanded forward"
    assert close(forward_incremental(shape, exact, ids), logits, tol=1e-9), \
        "latent-cache decode != full forward"
    assert close(forward(shape, exact, ids[:5]), logits[:5]), "prefix != full"
    diffs = fixture_sensitivity(shape, exact, ids, logits)

    d = pathlib.Path(out_dir) / name
    write_fixture_files(d, config, {n: ("F32", t.numpy()) for n, t in weights.items()},
                        ids, logits)

    # Read back what was written and make sure the reference reproduces it from the files alone.
    reread = reread_f32_weights(d / "model.safetensors", weight_shapes(shape))
    assert torch.equal(forward(shape, reread, ids), logits), "file does not reproduce logits"
    assert Shape(json.loads((d / "config.json").read_text())).__dict__ == shape.__dict__

    if verbose:
        rope = Rope(shape)
        probs = torch.softmax(logits, dim=-1)
        # Attention rows past position 0 (row 0 sees one key and is trivially one-hot).
        att = torch.cat([p[:, 1:, :].reshape(-1, p.shape[-1]) for p in stats])
        att_max = att.max(dim=-1).values
        print(f"{d}:")
        for f in FIXTURE_FILES:
            print(f"  {f:22s} {(d / f).stat().st_size:6d} bytes")
        print(f"  input_ids {ids.tolist()}")
        if shape.rope_scaling is not None:
            print(f"  yarn: low {rope.low}, high {rope.high}, ramp {rope.ramp.tolist()}, "
                  f"inv_freq {[f'{x:.6g}' for x in rope.inv_freq.tolist()]} "
                  f"(plain {[f'{x:.6g}' for x in base_inv_freq(shape).tolist()]})")
            print(f"  yarn: get_mscale(s, mscale) {rope.mscale:.9f}, get_mscale(s, mscale_all_dim) "
                  f"{rope.mscale_all_dim:.9f}, cos/sin multiplier {rope.cos_sin_mult:.9f}")
        print(f"  softmax_scale {rope.softmax_scale:.9f} "
              f"(1/sqrt({shape.nope}+{shape.rope}) = {1 / math.sqrt(shape.nope + shape.rope):.9f})")
        print(f"  logits: std {logits.std().item():.3f}, max |.| {logits.abs().max().item():.3f}, "
              f"mean top-1 prob {probs.max(dim=-1).values.mean().item():.3f}")
        print(f"  attention (rows at positions >= 1, all layers/heads): max prob mean "
              f"{att_max.mean().item():.3f}, min {att_max.min().item():.3f}, "
              f"max {att_max.max().item():.3f}; rows with max prob > 0.99: "
              f"{(att_max > 0.99).sum().item()}/{att_max.numel()}")
        print("  max |logit change| under mistakes: "
              + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))


def generate(out_dir, verbose):
    for name, spec in FIXTURES.items():
        build_fixture(name, spec, out_dir, verbose)
    if verbose:
        print(f"largest |absorbed - expanded| attention output over all layers: "
              f"{_max_absorbed_diff[0]:.3g} (tolerance {ABSORBED_TOL:g})")


def main():
    return run_cli(__doc__, run_self_checks, generate, FIXTURES, "tools.reference.deepseek_v2")


if __name__ == "__main__":
    sys.exit(main())
