"""The trained model family: five attention kinds at equal parameter count, their configs, their
training forward pass, and the check that it computes what kvserve computes.

Kinds (docs/quality.md has the study; docs/math.md the equations):
  mha     LlamaForCausalLM, 8 query heads, 8 KV heads
  gqa     LlamaForCausalLM, 8 query heads, 2 KV heads (h/4)
  mqa     LlamaForCausalLM, 8 query heads, 1 KV head
  mla     DeepseekV2ForCausalLM, dense MLP, kv_lora_rank 4*d_h, decoupled RoPE key d_h/2 wide
          (DeepSeek-V2's proportions: d_h 128, r 64, c 512), no query compression
  hybrid  KvserveHybridForCausalLM, layers s4 / attention (MHA) / s4 / attention, S4D-LegS,
          zero-order hold, d_state 16
Shared: vocab 2048 (tools/train/bpe.py), hidden 128, 4 layers, head_dim 16, RMSNorm eps 1e-5,
RoPE theta 10000, SwiGLU MLP, untied LM head, context 256. Parameter counts are equalised by the
MLP width alone (intermediate_size), the one dimension every kind shares; equalise() picks, per
kind, the width whose total is closest to MHA's.

forward() is the training pass: batched, float32 (or float64 for the check), written from the same
equations as tools/reference/{llama,deepseek_v2,hybrid_s4}.py, whose functional forward passes
define what kvserve computes. check_against_reference() runs both in float64 on the same weights
and requires the logits to agree to 1e-9 relative; train.py runs it on every exported model.

Parameters are held under their Hugging Face names, so export is a rounding to bf16; the one
exception is the S4 A_real, trained as log(-A_real) so that Re(lambda) stays negative (the format
requires it), and exported as -exp(.).
"""

import math

import numpy as np
import torch

from tools.reference import deepseek_v2 as ref_mla
from tools.reference import hybrid_s4 as ref_hybrid
from tools.reference import llama as ref_llama

KINDS = ("mha", "gqa", "mqa", "mla", "hybrid")
VOCAB = 2048
HIDDEN = 128
LAYERS = 4
HEADS = 8
HEAD_DIM = HIDDEN // HEADS
CONTEXT = 256
MHA_INTERMEDIATE = 384
S4_D_STATE = 16
HYBRID_LAYERS = ["s4", "attention", "s4", "attention"]
EPS = 1e-5
ROPE_THETA = 10000.0
INIT_STD = 0.02


def base_config(kind, intermediate, bos_id, eos_ids):
    common = {
        "vocab_size": VOCAB, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": intermediate, "hidden_act": "silu",
        "rms_norm_eps": EPS, "rope_theta": ROPE_THETA, "max_position_embeddings": CONTEXT,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": bos_id,
        "eos_token_id": eos_ids[0],
    }
    if kind in ("mha", "gqa", "mqa"):
        kv = {"mha": HEADS, "gqa": HEADS // 4, "mqa": 1}[kind]
        return dict(common, architectures=["LlamaForCausalLM"], model_type="llama",
                    num_key_value_heads=kv, rope_scaling=None, attention_bias=False,
                    mlp_bias=False)
    if kind == "mla":
        return dict(common, architectures=["DeepseekV2ForCausalLM"], model_type="deepseek_v2",
                    num_key_value_heads=HEADS, q_lora_rank=None, kv_lora_rank=4 * HEAD_DIM,
                    qk_nope_head_dim=HEAD_DIM, qk_rope_head_dim=HEAD_DIM // 2,
                    v_head_dim=HEAD_DIM, rope_scaling=None, attention_bias=False,
                    n_routed_experts=None, first_k_dense_replace=0, moe_layer_freq=1)
    assert kind == "hybrid", kind
    return dict(common, architectures=["KvserveHybridForCausalLM"], model_type="kvserve_hybrid",
                num_key_value_heads=HEADS, layer_types=list(HYBRID_LAYERS),
                s4_d_state=S4_D_STATE, s4_discretization="zoh", s4_init="legs")


def reference_module(config):
    return {"LlamaForCausalLM": ref_llama, "DeepseekV2ForCausalLM": ref_mla,
            "KvserveHybridForCausalLM": ref_hybrid}[config["architectures"][0]]


def shapes(config):
    """[(name, dims)] of the checkpoint, from the reference module that defines the format."""
    ref = reference_module(config)
    return ref.weight_shapes(ref.Shape(config))


def num_params(config):
    return sum(math.prod(d) for _, d in shapes(config))


def equalise(kind, bos_id, eos_ids):
    """The config of `kind` whose MLP width brings its parameter count closest to MHA's."""
    target = num_params(base_config("mha", MHA_INTERMEDIATE, bos_id, eos_ids))
    best = min(range(MHA_INTERMEDIATE - 64, MHA_INTERMEDIATE + 129),
               key=lambda i: abs(num_params(base_config(kind, i, bos_id, eos_ids)) - target))
    return base_config(kind, best, bos_id, eos_ids)


# ----------------------------------------------------------------------------------------------
# Initialisation


def init_params(config, gen):
    """{HF name: float32 tensor} (A_real as log(-A_real)), drawn in checkpoint order from gen.

    Linear weights and the embedding N(0, 0.02^2); the projections that write into the residual
    stream (o_proj, down_proj, s4.out_proj) are scaled by 1/sqrt(2 * layers) (GPT-2). S4: the
    reference's S4D-LegS init (tools/reference/hybrid_s4.py make_weights), identical per channel.
    """
    out = {}
    lam = bvec = None
    if "layer_types" in config:
        lam, bvec = ref_hybrid.s4d_legs(config["s4_d_state"])
    for name, dims in shapes(config):
        if name.endswith("norm.weight"):
            t = torch.ones(dims)
        elif name.endswith("s4.log_dt"):
            lo, hi = math.log(ref_hybrid.S4_DT_MIN), math.log(ref_hybrid.S4_DT_MAX)
            t = lo + (hi - lo) * torch.rand(dims, generator=gen)
        elif name.endswith("s4.A_real"):
            t = torch.from_numpy(np.tile(np.log(-lam.real), (dims[0], 1))).float()
        elif name.endswith("s4.A_imag"):
            t = torch.from_numpy(np.tile(lam.imag, (dims[0], 1))).float()
        elif name.endswith("s4.B"):
            pairs = np.stack([bvec.real, bvec.imag], axis=-1)
            t = torch.from_numpy(np.tile(pairs, (dims[0], 1, 1))).float()
        elif name.endswith("s4.C"):
            t = ref_hybrid.S4_C_STD * torch.randn(dims, generator=gen)
        elif name.endswith("s4.D"):
            t = torch.randn(dims, generator=gen)
        else:
            std = INIT_STD
            if name.endswith(("o_proj.weight", "down_proj.weight", "out_proj.weight")):
                std /= math.sqrt(2 * config["num_hidden_layers"])
            t = std * torch.randn(dims, generator=gen)
        out[name] = t.float()
    return out


def hf_weights(params):
    """The checkpoint's float32 tensors from the training parameters."""
    return {n: (-torch.exp(p) if n.endswith("s4.A_real") else p).detach().float()
            for n, p in params.items()}


def train_view(weights):
    """Inverse of hf_weights (for running forward() on checkpoint weights)."""
    return {n: (torch.log(-w) if n.endswith("s4.A_real") else w) for n, w in weights.items()}


# ----------------------------------------------------------------------------------------------
# Training forward pass: ids [B, T] -> logits [B, T, vocab]


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def rope_angles(t, dim, dtype):
    inv_freq = ROPE_THETA ** (-2.0 * torch.arange(dim // 2, dtype=torch.float64) / dim)
    angle = torch.arange(t, dtype=torch.float64)[:, None] * inv_freq[None, :]     # [T, dim/2]
    return torch.cos(angle).to(dtype)[:, None, :], torch.sin(angle).to(dtype)[:, None, :]


def rope_half_split(x, cos, sin):
    """x [B, T, n, d]: pairs (j, j + d/2), Llama's layout."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def rope_interleaved(x, cos, sin):
    """x [B, T, n, d]: pairs (2j, 2j + 1), DeepSeek-V2's layout."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).reshape(x.shape)


def causal_softmax_attention(q, k, v, scale):
    """q, k [B, T, H, dk], v [B, T, H, dv] -> [B, T, H*dv]."""
    b, t, h, _ = q.shape
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * scale                        # [B, H, T, T]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.einsum("bhij,bjhd->bihd", torch.softmax(scores, dim=-1), v)       # [B, T, H, dv]
    return out.reshape(b, t, -1)


def llama_attention(config, w, p, x):
    b, t, _ = x.shape
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    d = config["hidden_size"] // heads
    q = (x @ w[p + "self_attn.q_proj.weight"].T).reshape(b, t, heads, d)          # [B, T, H, d]
    k = (x @ w[p + "self_attn.k_proj.weight"].T).reshape(b, t, kv, d)             # [B, T, G, d]
    v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(b, t, kv, d)
    cos, sin = rope_angles(t, d, x.dtype)
    q, k = rope_half_split(q, cos, sin), rope_half_split(k, cos, sin)
    # Query head h reads KV head h // (H / G).
    k = k.repeat_interleave(heads // kv, dim=2)                                   # [B, T, H, d]
    v = v.repeat_interleave(heads // kv, dim=2)
    o = causal_softmax_attention(q, k, v, 1.0 / math.sqrt(d))                     # [B, T, H*d]
    return o @ w[p + "self_attn.o_proj.weight"].T


def mla_attention(config, w, p, x):
    """DeepSeek-V2 MLA, expanded form (tools/reference/deepseek_v2.py mla_project and
    attention_expanded)."""
    b, t, _ = x.shape
    heads, c = config["num_attention_heads"], config["kv_lora_rank"]
    n, r, dv = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
    q = (x @ w[p + "self_attn.q_proj.weight"].T).reshape(b, t, heads, n + r)      # [B, T, H, n+r]
    kv_a = x @ w[p + "self_attn.kv_a_proj_with_mqa.weight"].T                     # [B, T, c+r]
    c_kv = rms_norm(kv_a[..., :c], w[p + "self_attn.kv_a_layernorm.weight"], config["rms_norm_eps"])
    cos, sin = rope_angles(t, r, x.dtype)
    q_pe = rope_interleaved(q[..., n:], cos, sin)                                 # [B, T, H, r]
    k_pe = rope_interleaved(kv_a[..., None, c:], cos, sin)                        # [B, T, 1, r]
    kv = (c_kv @ w[p + "self_attn.kv_b_proj.weight"].T).reshape(b, t, heads, n + dv)
    k = torch.cat([kv[..., :n], k_pe.expand(b, t, heads, r)], dim=-1)             # [B, T, H, n+r]
    qq = torch.cat([q[..., :n], q_pe], dim=-1)
    o = causal_softmax_attention(qq, k, kv[..., n:], 1.0 / math.sqrt(n + r))      # [B, T, H*v]
    return o @ w[p + "self_attn.o_proj.weight"].T


def s4_mixer(config, w, p, x):
    """S4D layer by FFT convolution (tools/reference/hybrid_s4.py s4_convolution, zero state):
    y = K * u + D u, K_k = 2 Re sum_n C_n Bbar_n Abar_n^k, ZOH; out = GELU(y) @ out_proj.T."""
    b, t, _ = x.shape
    u = x @ w[p + "s4.in_proj.weight"].T                                          # [B, T, H]
    dt = torch.exp(w[p + "s4.log_dt"])                                            # [H]
    lam = torch.complex(-torch.exp(w[p + "s4.A_real"]), w[p + "s4.A_imag"])       # [H, M]
    bb = torch.complex(w[p + "s4.B"][..., 0], w[p + "s4.B"][..., 1])
    cc = torch.complex(w[p + "s4.C"][..., 0], w[p + "s4.C"][..., 1])
    dl = dt[:, None] * lam                                                        # [H, M]
    bbar = (torch.exp(dl) - 1.0) / lam * bb                                       # [H, M]
    k = torch.arange(t, dtype=x.dtype)
    powers = torch.exp(dl[..., None] * k)                                         # [H, M, T]
    kern = 2.0 * ((cc * bbar)[..., None] * powers).sum(dim=1).real                # [H, T]
    spec = torch.fft.rfft(u.transpose(1, 2), n=2 * t) * torch.fft.rfft(kern, n=2 * t)
    y = torch.fft.irfft(spec, n=2 * t)[..., :t].transpose(1, 2)                   # [B, T, H]
    y = y + w[p + "s4.D"] * u
    gelu = 0.5 * y * (1.0 + torch.erf(y / math.sqrt(2.0)))
    return gelu @ w[p + "s4.out_proj.weight"].T


def layer_kinds(config):
    if "layer_types" in config:
        return config["layer_types"]
    mla = config["architectures"][0] == "DeepseekV2ForCausalLM"
    return ["mla" if mla else "attention"] * config["num_hidden_layers"]


def forward(config, w, ids):
    """w: training parameters (A_real as log(-A_real)); ids [B, T] -> logits [B, T, vocab]."""
    eps = config["rms_norm_eps"]
    mixers = {"attention": llama_attention, "mla": mla_attention, "s4": s4_mixer}
    h = w["model.embed_tokens.weight"][ids]                                       # [B, T, hidden]
    for i, kind in enumerate(layer_kinds(config)):
        p = f"model.layers.{i}."
        h = h + mixers[kind](config, w, p, rms_norm(h, w[p + "input_layernorm.weight"], eps))
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate = x @ w[p + "mlp.gate_proj.weight"].T                                # [B, T, inter]
        up = x @ w[p + "mlp.up_proj.weight"].T
        h = h + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    return rms_norm(h, w["model.norm.weight"], eps) @ w["lm_head.weight"].T       # [B, T, vocab]


# ----------------------------------------------------------------------------------------------
# The reference forward pass (float64) on checkpoint weights, and the cross-check


def reference_logits(config, weights64, ids):
    """tools/reference's forward of this config: weights {name: float64}, ids [T] -> [T, vocab]."""
    ref = reference_module(config)
    return ref.forward(ref.Shape(config), weights64, ids)


def check_against_reference(config, weights64, ids, tol=1e-9):
    """forward() in float64 equals the reference forward on the same weights; returns the max
    relative difference. Raises AssertionError otherwise."""
    ours = forward(config, train_view(weights64), ids[None, :])[0]
    ref = reference_logits(config, weights64, ids)
    rel = (torch.max(torch.abs(ours - ref)) / torch.max(torch.abs(ref))).item()
    assert rel <= tol, f"{config['architectures'][0]}: training forward != reference ({rel:.3g})"
    return rel
