"""Independent PyTorch reference for kvserve's hybrid attention + S4 (S4D) model, and its fixtures.

Run only with /usr/bin/python3 (Debian's torch and numpy):

    /usr/bin/python3 -m tools.reference.hybrid_s4            # (re)write tests/data/tiny_hybrid_s4*/
    /usr/bin/python3 -m tools.reference.hybrid_s4 --check    # regenerate in a temp dir, compare
    /usr/bin/python3 -m tools.reference.hybrid_s4 --out-dir /tmp/fixtures

(from the repository root).

The format (docs/model-format.md has the full specification) is `KvserveHybridForCausalLM`: a
Llama decoder whose layers are each either a Llama attention layer or an S4 layer, as listed in
config.json's `layer_types`. Every layer has the same SwiGLU MLP block after its mixer.

What it writes. For each fixture in FIXTURES, a directory <out-dir>/<name>/ holding:

  config.json           the KvserveHybridForCausalLM config (keys sorted).
  model.safetensors     F32 weights (names below).
  expected.safetensors  input_ids (I32, [T]) and logits (F32, [T, vocab]): the logits at every
                        position of one causal forward pass over input_ids, positions 0..T-1.

The forward pass is written from the equations (docs/math.md sections 4-5 for HiPPO / S4 / S4D;
the attention layer is tools/reference/llama.py's, imported) and runs in float64 on the exact stored
float32 weight values; only the final logits are rounded to float32. H = hidden_size channels,
M = s4_d_state / 2 complex modes per channel:

  h_0 = embed_tokens[ids]                                                       [T, hidden]
  per layer i:
    x   = RMSNorm(h) * input_layernorm
    attention layer ("attention"): exactly Llama (rotate-half RoPE, GQA, causal);
        h = h + concat_h(o_h) @ o_proj.T
    S4 layer ("s4"), per channel c and mode n (complex arithmetic; lambda = A_real + i A_imag,
    B = B[..., 0] + i B[..., 1], C likewise):
        dt  = exp(log_dt[c])
        ZOH:      Abar = exp(dt lambda),                  Bbar = (exp(dt lambda) - 1) / lambda * B
        bilinear: Abar = (1 + dt lambda/2)/(1 - dt lambda/2), Bbar = dt / (1 - dt lambda/2) * B
        s_k = Abar s_{k-1} + Bbar u_k   (s_{-1} = 0 at position 0),  u = (x @ s4.in_proj.weight.T)[:, c]
        y_k = 2 Re(sum_n C_n s_{k,n}) + D[c] u_k
        h   = h + GELU_erf(y) @ s4.out_proj.weight.T
    x   = RMSNorm(h) * post_attention_layernorm
    h   = h + (silu(x @ gate_proj.T) * (x @ up_proj.T)) @ down_proj.T
  logits = RMSNorm(h) * model.norm @ lm_head.T           (never tied)

Every S4 layer call is computed twice in float64 and the two must agree to 1e-10: the recurrence
above, and the convolution y = K * u + (state term) + D u with the kernel
K_k = 2 Re sum_n C_n Bbar_n Abar_n^k (Abar^k = exp(k log Abar), a Vandermonde product) done by
FFT over length 2L (zero-padded; the first L outputs kept). A chunk that starts from a carried
state s adds 2 Re sum_n C_n Abar_n^(k+1) s_n and ends in
s' = Abar^L s + sum_j Abar^(L-1-j) Bbar u_j.

Initialisation (S4D-LegS, docs/math.md 5.4-5.5): the HiPPO-LegS matrix A (paper scaling, B_n =
sqrt(2n+1)), S = A + 1/2 v v^T + 1/2 I with v_n = sqrt(2n+1) is skew-symmetric, S = V (i Omega) V^*
with V unitary (eigh of the Hermitian -iS), lambda = -1/2 + i Omega, Btilde = V^* B; the M modes
with Omega > 0 are kept (their conjugates are implicit in 2 Re), each eigenvector's phase fixed by
making its first component real and positive (so the bytes do not depend on LAPACK's choice).
Every channel of every S4 layer starts from the same lambda and Btilde, as S4D does; C is random
complex, D random, log_dt uniform in [ln 0.001, ln 0.1].

Determinism: weights and input ids come from torch.Generator with fixed seeds, tensors are written
in sorted-name order and the JSON headers have a fixed key order, so two runs with the same
torch/numpy build give byte-identical files.

Self-checks, run every time: the HiPPO-LegS oracles of docs/math.md section 7 (N = 4 matrix, its
eigenvalues), S + S^T = 0 and Re eig(A + 1/2 v v^T) = -1/2 (to 1e-12), V unitary and A = V Lambda
V^* - 1/2 v v^T; the dropped half of the modes is the conjugate of the kept half (so 2 Re of M
modes equals the full 2M-mode diagonal system); S4D-Lin / S4D-Inv against oracle 16; both
discretisations keep the continuous equilibrium -B u / lambda fixed; recurrence == padded-FFT
convolution (with and without a carried state) and the circular convolution is wrong by > 1e-3; the
safetensors writer round-trips. Per fixture: a token-by-token (state-carrying) forward and a
chunked prefill split at token 5 and a prefill followed by 8 recurrent decode steps all equal the
one-shot forward, the written files reproduce the logits bit for bit, the circular convolution
moves every S4 layer's output by > 1e-3, and the logits move materially under each of a list of
common implementation mistakes.
"""

import json
import math
import pathlib
import sys
import tempfile

import numpy as np
import torch

from .common import (
    FIXTURE_FILES,
    close,
    exact_weights,
    input_ids,
    fan_in_weight,
    read_safetensors,
    reread_f32_weights,
    rms_norm,
    run_cli,
    self_check_safetensors_roundtrip,
    write_fixture_files,
)
# The attention layers are exactly the Llama ones: RoPE, its wrong pairing and GQA come from there.
from .llama import gqa_attention, rope_half_split, rope_interleaved

LAYER_TYPES = ("attention", "s4")


def _config(**overrides):
    base = {
        "architectures": ["KvserveHybridForCausalLM"],
        "model_type": "kvserve_hybrid",
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "tie_word_embeddings": False,
        "vocab_size": 64,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 256,
        "s4_d_state": 8,
        "s4_init": "legs",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    base.update(overrides)
    base["num_hidden_layers"] = len(base["layer_types"])
    return base


# Fixture definitions. `config` is written verbatim to config.json; `seed` drives the weights
# (seed) and the input ids (seed + 1); `matrix_gain` sets the linear weights' scale
# (std = gain / sqrt(fan_in)). `split` is where the chunked-prefill self-check splits the prompt.
FIXTURES = {
    "tiny_hybrid_s4": {
        "seed": 20240620,
        "num_tokens": 12,
        "split": 5,
        "matrix_gain": 1.2,
        # head_dim is not in the config: it is derived as hidden / heads = 4.
        "config": _config(layer_types=["s4", "attention", "s4"], s4_discretization="zoh"),
    },
    "tiny_hybrid_s4_bilinear": {
        "seed": 20240605,
        "num_tokens": 12,
        "split": 5,
        "matrix_gain": 1.2,
        # The same head_dim 4, written out explicitly.
        "config": _config(layer_types=["attention", "s4"], s4_discretization="bilinear",
                          head_dim=4),
    },
}

EMBED_STD = 1.0
S4_C_STD = 0.5           # Re C and Im C each N(0, 0.5^2).
S4_D_STD = 1.0
S4_DT_MIN, S4_DT_MAX = 1e-3, 1e-1  # log_dt ~ U[ln dt_min, ln dt_max], as S4 / S4D initialise it.

CONV_VS_RECURRENCE_TOL = 1e-10
CIRCULAR_MIN_DIFF = 1e-3


# ----------------------------------------------------------------------------------------------
# HiPPO-LegS and the S4D initialisations (docs/math.md sections 4.3, 5.4, 5.5)


def hippo_legs(n_state):
    """HiPPO-LegS in the paper / S4 scaling: A [N, N] lower-triangular, B [N] (float64 numpy).

    A[n, k] = -sqrt(2n+1) sqrt(2k+1) for k < n, -(n+1) on the diagonal, 0 above; B_n = sqrt(2n+1).
    The off-diagonal entries are the products v_n v_k of v = sqrt(2n+1), so that the skew-symmetric
    part below cancels them term by term.
    """
    v = np.sqrt(2.0 * np.arange(n_state) + 1.0)
    a = -np.tril(np.outer(v, v), -1) - np.diag(np.arange(n_state) + 1.0)
    return a, v.copy()


def s4d_legs(n_state, report=None):
    """S4D-LegS: the diagonal part of the DPLR form of HiPPO-LegS.

    Returns (lam [M] complex128, b [M] complex128), M = N/2, sorted by Im(lam) ascending, every
    Im(lam) > 0. Asserts the DPLR identities on the way (to 1e-12).
    """
    assert n_state % 2 == 0 and n_state >= 2
    a, b = hippo_legs(n_state)
    v = b.copy()                                                   # v_n = sqrt(2n+1)
    vvt = np.outer(v, v)
    np.fill_diagonal(vvt, 2.0 * np.arange(n_state) + 1.0)          # v_n^2 = 2n+1 exactly
    s = a + 0.5 * vvt + 0.5 * np.eye(n_state)
    skew = np.max(np.abs(s + s.T))
    assert skew <= 1e-12, f"S + S^T != 0 (max {skew:.3g})"
    assert np.max(np.abs(np.diag(s))) <= 1e-12
    # Independent check with a general (non-Hermitian) eigensolver: every eigenvalue of
    # A + 1/2 v v^T = S - 1/2 I has real part exactly -1/2.
    normal_eig = np.linalg.eigvals(a + 0.5 * vvt)
    re_dev = np.max(np.abs(normal_eig.real + 0.5))
    assert re_dev <= 1e-12, f"Re eig(A + vv^T/2) != -1/2 (max deviation {re_dev:.3g})"
    # S = i H with H = -i S Hermitian: H = V diag(omega) V^*, so S = V diag(i omega) V^*.
    omega, vecs = np.linalg.eigh(-1j * s)
    # Fix each eigenvector's phase: first component real and positive.
    first = vecs[0, :]
    assert np.min(np.abs(first)) > 1e-3, "eigenvector with a ~zero first component"
    vecs = vecs * (np.abs(first) / first)[None, :]
    assert np.max(np.abs(vecs.conj().T @ vecs - np.eye(n_state))) <= 1e-12, "V not unitary"
    lam_full = -0.5 + 1j * omega                                    # [N]
    b_full = vecs.conj().T @ b                                      # [N] = V^* B
    # A = V Lambda V^* - P P^T with P = v / sqrt(2) (the "NPLR" form).
    recon = vecs @ np.diag(lam_full) @ vecs.conj().T - 0.5 * vvt
    assert np.max(np.abs(recon - a)) <= 1e-12 * max(1.0, np.max(np.abs(a))), "A != V L V^* - PP^T"
    # Eigenvalues come in conjugate pairs; keep Im > 0. With the phase convention the dropped
    # modes are exactly the conjugates of the kept ones (eigenvector and B~ alike).
    order = np.argsort(omega)
    pos = [k for k in order if omega[k] > 0]
    neg = [k for k in order if omega[k] < 0][::-1]
    assert len(pos) == len(neg) == n_state // 2, "a zero eigenvalue of S"
    for kp, kn in zip(pos, neg):
        assert abs(lam_full[kp] - np.conj(lam_full[kn])) <= 1e-12 * max(1.0, abs(lam_full[kp]))
        assert abs(b_full[kp] - np.conj(b_full[kn])) <= 1e-12 * max(1.0, abs(b_full[kp]))
    if report is not None:
        report.update(skew=skew, re_dev=re_dev)
    return lam_full[pos], b_full[pos]


def s4d_lin(n_state):
    """S4D-Lin: lambda_n = -1/2 + i pi n, n < N/2 (B = 1). Informational (`s4_init` "lin")."""
    n = np.arange(n_state // 2)
    return -0.5 + 1j * math.pi * n


def s4d_inv(n_state):
    """S4D-Inv: lambda_n = -1/2 + i (N/pi)(N/(2n+1) - 1), n < N/2 (B = 1). `s4_init` "inv"."""
    n = np.arange(n_state // 2)
    return -0.5 + 1j * (n_state / math.pi) * (n_state / (2 * n + 1) - 1)


# ----------------------------------------------------------------------------------------------
# Model shape and weights


class Shape:
    """The dimensions of a KvserveHybridForCausalLM model, derived from its config."""

    def __init__(self, config):
        assert config["architectures"] == ["KvserveHybridForCausalLM"]
        assert config["model_type"] == "kvserve_hybrid"
        self.vocab = config["vocab_size"]
        self.hidden = config["hidden_size"]
        self.inter = config["intermediate_size"]
        self.num_layers = config["num_hidden_layers"]
        self.layer_types = list(config["layer_types"])
        self.num_heads = config["num_attention_heads"]
        self.num_kv_heads = config.get("num_key_value_heads", self.num_heads)
        self.head_dim = config.get("head_dim") or self.hidden // self.num_heads
        self.rope_theta = float(config["rope_theta"])
        self.eps = float(config["rms_norm_eps"])
        self.d_state = config["s4_d_state"]
        self.modes = self.d_state // 2
        self.discretization = config["s4_discretization"]
        self.s4_init = config.get("s4_init")
        assert len(self.layer_types) == self.num_layers
        assert all(t in LAYER_TYPES for t in self.layer_types), self.layer_types
        assert self.num_heads % self.num_kv_heads == 0 and self.head_dim % 2 == 0
        assert self.d_state % 2 == 0 and self.d_state > 0
        assert self.discretization in ("zoh", "bilinear")
        assert self.s4_init in (None, "legs", "lin", "inv")
        assert not config.get("tie_word_embeddings", False)
        assert config.get("hidden_act", "silu") == "silu"


def weight_shapes(shape):
    """Tensor names and shapes, in module order (the order weights are drawn in)."""
    s = shape
    out = [("model.embed_tokens.weight", [s.vocab, s.hidden])]
    for i, kind in enumerate(s.layer_types):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", [s.hidden]))
        if kind == "attention":
            out += [
                (p + "self_attn.q_proj.weight", [s.num_heads * s.head_dim, s.hidden]),
                (p + "self_attn.k_proj.weight", [s.num_kv_heads * s.head_dim, s.hidden]),
                (p + "self_attn.v_proj.weight", [s.num_kv_heads * s.head_dim, s.hidden]),
                (p + "self_attn.o_proj.weight", [s.hidden, s.num_heads * s.head_dim]),
            ]
        else:
            h, m = s.hidden, s.modes
            out += [
                (p + "s4.in_proj.weight", [s.hidden, s.hidden]),
                (p + "s4.log_dt", [h]),
                (p + "s4.A_real", [h, m]),
                (p + "s4.A_imag", [h, m]),
                (p + "s4.B", [h, m, 2]),
                (p + "s4.C", [h, m, 2]),
                (p + "s4.D", [h]),
                (p + "s4.out_proj.weight", [s.hidden, s.hidden]),
            ]
        out += [
            (p + "post_attention_layernorm.weight", [s.hidden]),
            (p + "mlp.gate_proj.weight", [s.inter, s.hidden]),
            (p + "mlp.up_proj.weight", [s.inter, s.hidden]),
            (p + "mlp.down_proj.weight", [s.hidden, s.inter]),
        ]
    out.append(("model.norm.weight", [s.hidden]))
    out.append(("lm_head.weight", [s.vocab, s.hidden]))
    return out


def s4_init_values(shape):
    """(lam [M] complex128, b [M] complex128) of the config's s4_init, shared by every channel."""
    if shape.s4_init == "legs":
        return s4d_legs(shape.d_state)
    lam = s4d_lin(shape.d_state) if shape.s4_init == "lin" else s4d_inv(shape.d_state)
    return lam, np.ones(shape.modes, dtype=np.complex128)


def make_weights(shape, seed, matrix_gain):
    """float32 weights {name: tensor}; random ones drawn in module order from one generator.

    Norm weights are 1 + N(0, 0.1^2); the embedding is N(0, 1); every linear weight [out, in] is
    N(0, (gain / sqrt(in))^2). S4: A_real / A_imag / B are the S4D init (no randomness), C has
    N(0, 0.5^2) real and imaginary parts, D is N(0, 1), log_dt is U[ln 0.001, ln 0.1].
    """
    gen = torch.Generator().manual_seed(seed)
    lam, b = s4_init_values(shape)
    h = shape.hidden
    weights = {}
    for name, dims in weight_shapes(shape):
        if name.endswith("s4.log_dt"):
            lo, hi = math.log(S4_DT_MIN), math.log(S4_DT_MAX)
            weights[name] = lo + (hi - lo) * torch.rand(dims, generator=gen, dtype=torch.float32)
        elif name.endswith("s4.A_real"):
            weights[name] = torch.from_numpy(np.tile(lam.real, (h, 1))).to(torch.float32)
        elif name.endswith("s4.A_imag"):
            weights[name] = torch.from_numpy(np.tile(lam.imag, (h, 1))).to(torch.float32)
        elif name.endswith("s4.B"):
            pairs = np.stack([b.real, b.imag], axis=-1)                          # [M, 2]
            weights[name] = torch.from_numpy(np.tile(pairs, (h, 1, 1))).to(torch.float32)
        elif name.endswith("s4.C"):
            weights[name] = S4_C_STD * torch.randn(dims, generator=gen, dtype=torch.float32)
        elif name.endswith("s4.D"):
            weights[name] = S4_D_STD * torch.randn(dims, generator=gen, dtype=torch.float32)
        else:
            weights[name] = fan_in_weight(gen, name, dims, matrix_gain, EMBED_STD)
        assert list(weights[name].shape) == dims, name
    assert weights and all(w.dtype == torch.float32 for w in weights.values())
    return weights


# ----------------------------------------------------------------------------------------------
# Implementation options: the defaults are the format; the rest are deliberate mistakes used to
# show that the fixtures detect them.


class Options:
    def __init__(self, **kw):
        self.discretization = None      # Override the config's ("zoh" / "bilinear").
        self.circular = False           # FFT convolution of length L (wrap-around), not 2L.
        self.bbar_euler = False         # Bbar = dt * B.
        self.dt_softplus = False        # dt = softplus(log_dt) instead of exp(log_dt).
        self.re_lambda_neg_exp = False  # Re lambda = -exp(A_real) instead of A_real.
        self.conj_lambda = False        # lambda -> conj(lambda) (A_imag sign flipped).
        self.conj_c = False             # y = 2 Re(C^* s) instead of 2 Re(C s).
        self.b_real_only = False        # Im B ignored.
        self.planar_complex = False     # B, C [H, M, 2] read as [H, 2, M] (re plane, im plane).
        self.channel0_a_b = False       # A_real, A_imag, B of channel 0 used for every channel.
        self.re_factor = 2.0            # y = re_factor * Re(...); 1 is the "forgot the pair" bug.
        self.no_kernel = False          # y = D u only.
        self.no_d = False               # No D u skip.
        self.output_before_update = False  # y_k from s_{k-1} (index shift).
        self.s4_input_unnormed = False  # u = h instead of RMSNorm(h) * input_layernorm.
        self.activation = "gelu_erf"    # "gelu_erf" | "gelu_tanh" | "identity" | "silu".
        self.rope = rope_half_split
        self.eps = None                 # Override rms_norm_eps.
        for k, v in kw.items():
            assert hasattr(self, k), k
            setattr(self, k, v)

    def exact(self):
        """True when the convolution and the recurrence compute the same (possibly wrong) map."""
        return not self.circular and not self.output_before_update


CORRECT = Options()


# ----------------------------------------------------------------------------------------------
# The S4 layer


def gelu(y, kind):
    if kind == "gelu_erf":
        return 0.5 * y * (1.0 + torch.erf(y / math.sqrt(2.0)))
    if kind == "gelu_tanh":
        return 0.5 * y * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * y ** 3)))
    if kind == "silu":
        return torch.nn.functional.silu(y)
    assert kind == "identity"
    return y


class S4Discrete:
    """One S4 layer's discretised parameters, float64 / complex128:
    abar, bbar, c [H, M] complex, d [H] real."""

    def __init__(self, shape, w, p, opts=CORRECT):
        log_dt = w[p + "s4.log_dt"].to(torch.float64)
        dt = torch.nn.functional.softplus(log_dt) if opts.dt_softplus else torch.exp(log_dt)
        a_re = w[p + "s4.A_real"].to(torch.float64)
        a_im = w[p + "s4.A_imag"].to(torch.float64)
        b_t, c_t = w[p + "s4.B"].to(torch.float64), w[p + "s4.C"].to(torch.float64)
        if opts.channel0_a_b:
            a_re, a_im, b_t = (x[:1].expand_as(x) for x in (a_re, a_im, b_t))
        if opts.re_lambda_neg_exp:
            a_re = -torch.exp(a_re)
        lam = torch.complex(a_re, a_im)                                           # [H, M]
        if opts.conj_lambda:
            lam = lam.conj()
        if opts.planar_complex:
            b_t, c_t = (x.reshape(x.shape[0], 2, -1).transpose(1, 2) for x in (b_t, c_t))
        b = torch.complex(b_t[..., 0], torch.zeros_like(b_t[..., 1]) if opts.b_real_only
                          else b_t[..., 1])                                       # [H, M]
        c = torch.complex(c_t[..., 0], c_t[..., 1])                               # [H, M]
        if opts.conj_c:
            c = c.conj()
        if opts.no_kernel:
            c = torch.zeros_like(c)
        assert torch.all(lam.real < 0), f"{p}s4: Re lambda must be negative"
        dl = dt[:, None] * lam                                                    # [H, M]
        method = opts.discretization or shape.discretization
        if method == "zoh":
            self.abar = torch.exp(dl)
            self.bbar = (torch.exp(dl) - 1.0) / lam * b
        else:
            assert method == "bilinear"
            self.abar = (1.0 + dl / 2) / (1.0 - dl / 2)
            self.bbar = dt[:, None] / (1.0 - dl / 2) * b
        if opts.bbar_euler:
            self.bbar = dt[:, None] * b
        self.c = c
        self.d = torch.zeros_like(dt) if opts.no_d else w[p + "s4.D"].to(torch.float64)
        self.re_factor = opts.re_factor
        self.dt = dt

    def to(self, real_dtype):
        """The same parameters rounded to float32 / complex64 (the float32 simulation)."""
        cdt = torch.complex64 if real_dtype == torch.float32 else torch.complex128
        out = object.__new__(S4Discrete)
        out.abar, out.bbar, out.c = self.abar.to(cdt), self.bbar.to(cdt), self.c.to(cdt)
        out.d, out.dt, out.re_factor = self.d.to(real_dtype), self.dt, self.re_factor
        return out


def s4_recurrence(prm, u, state, output_before_update=False):
    """u: [L, H] real, state: [H, M] complex (the state before u[0]). Returns (y [L, H], state)."""
    ys = []
    s = state
    for k in range(u.shape[0]):
        prev = s
        s = prm.abar * s + prm.bbar * u[k][:, None]                               # [H, M]
        read = prev if output_before_update else s
        ys.append(prm.re_factor * (prm.c * read).sum(dim=-1).real + prm.d * u[k])
    return torch.stack(ys) if ys else u.new_zeros(0, u.shape[1]), s


def s4_kernel(prm, length):
    """K [H, L]: K_k = re_factor * Re sum_n C_n Bbar_n Abar_n^k, with Abar^k = exp(k log Abar)."""
    k = torch.arange(length, dtype=torch.float64)
    powers = torch.exp(k[None, None, :] * torch.log(prm.abar)[..., None])         # [H, M, L]
    return prm.re_factor * ((prm.c * prm.bbar)[..., None] * powers).sum(dim=1).real


def s4_convolution(prm, u, state, circular=False):
    """The same map as s4_recurrence via FFT: u: [L, H], state [H, M]. Returns (y [L, H], state).

    y = K * u (FFT of length 2L, zero padding, first L kept; length L when `circular`: the
    wrong, wrapped-around convolution) + re_factor Re sum_n C_n Abar^(k+1) s_n + D u;
    the state after the chunk is Abar^L s + sum_j Abar^(L-1-j) Bbar u_j.
    """
    length = u.shape[0]
    if length == 0:
        return u.new_zeros(0, u.shape[1]), state
    n_fft = length if circular else 2 * length
    kern = s4_kernel(prm, length)                                                 # [H, L]
    spec = torch.fft.rfft(u.T, n=n_fft) * torch.fft.rfft(kern, n=n_fft)           # [H, n/2+1]
    y = torch.fft.irfft(spec, n=n_fft)[:, :length]                                # [H, L]
    log_abar = torch.log(prm.abar)                                                # [H, M]
    k1 = torch.arange(1, length + 1, dtype=torch.float64)
    powers1 = torch.exp(k1[None, None, :] * log_abar[..., None])                  # Abar^(k+1)
    y = y + prm.re_factor * (prm.c[..., None] * powers1 * state[..., None]).sum(dim=1).real
    y = y.T + prm.d * u                                                           # [L, H]
    # Abar^(L-1-j) for j = 0..L-1 is powers1 / Abar reversed: Abar^L, ..., Abar^1 -> shift by 1.
    back = torch.exp(torch.arange(length - 1, -1, -1, dtype=torch.float64)[None, None, :]
                     * log_abar[..., None])                                       # [H, M, L]
    new_state = powers1[..., -1] * state + prm.bbar * (back * u.T[:, None, :]).sum(dim=-1)
    return y, new_state


_max_conv_rec_diff = [0.0]  # Largest relative |convolution - recurrence| seen, for the report.


def s4_mix(prm, u, state, mode, opts, check=True, layer_outputs=None):
    """One S4 mixing over a chunk, computed both ways and cross-checked; returns (y, state) of
    `mode` ("convolution" | "recurrent")."""
    y_rec, s_rec = s4_recurrence(prm, u, state, opts.output_before_update)
    if opts.output_before_update:
        return y_rec, s_rec
    y_conv, s_conv = s4_convolution(prm, u, state, circular=opts.circular)
    if check and opts.exact():
        scale = max(1.0, torch.max(torch.abs(y_rec)).item()) if u.shape[0] else 1.0
        dy = torch.max(torch.abs(y_conv - y_rec)).item() if u.shape[0] else 0.0
        ds = torch.max(torch.abs(s_conv - s_rec)).item()
        rel = max(dy, ds) / scale
        assert rel <= CONV_VS_RECURRENCE_TOL, f"convolution != recurrence ({dy:.3g}, {ds:.3g})"
        _max_conv_rec_diff[0] = max(_max_conv_rec_diff[0], rel)
    if layer_outputs is not None:
        layer_outputs.append((u, state, y_conv if mode == "convolution" else y_rec))
    return (y_conv, s_conv) if mode == "convolution" else (y_rec, s_rec)


# ----------------------------------------------------------------------------------------------
# Reference forward pass


def new_cache(shape, dtype=torch.float64):
    """Per layer: attention -> [K [0, G, d], V [0, G, d]]; s4 -> the state [H, M] complex."""
    cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
    cache = []
    for kind in shape.layer_types:
        if kind == "attention":
            empty = torch.empty(0, shape.num_kv_heads, shape.head_dim, dtype=dtype)
            cache.append([empty, empty.clone()])
        else:
            cache.append(torch.zeros(shape.hidden, shape.modes, dtype=cdt))
    return cache


def forward_chunk(shape, w, ids, start, cache, mode="convolution", opts=CORRECT, s4_params=None,
                  check=True, layer_outputs=None):
    """Runs ids (positions start..start+T-1) through the model, continuing from `cache` (updated
    in place); returns logits [T, vocab]. S4 layers use `mode`; attention reads the KV cache."""
    s = shape
    t = ids.shape[0]
    eps = s.eps if opts.eps is None else opts.eps
    dtype = w["model.embed_tokens.weight"].dtype
    positions = torch.arange(start, start + t)
    h = w["model.embed_tokens.weight"][ids]                                      # [T, hidden]
    for i, kind in enumerate(s.layer_types):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)                    # [T, hidden]
        if kind == "attention":
            q = (x @ w[p + "self_attn.q_proj.weight"].T).reshape(t, s.num_heads, s.head_dim)
            k = (x @ w[p + "self_attn.k_proj.weight"].T).reshape(t, s.num_kv_heads, s.head_dim)
            v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(t, s.num_kv_heads, s.head_dim)
            q = opts.rope(q, positions, s.rope_theta).to(dtype)                  # [T, H, d]
            k = opts.rope(k, positions, s.rope_theta).to(dtype)                  # [T, G, d]
            cache[i][0] = torch.cat([cache[i][0], k])                            # [start+T, G, d]
            cache[i][1] = torch.cat([cache[i][1], v])
            o = gqa_attention(q, cache[i][0], cache[i][1], q_offset=start)       # [T, H*d]
            h = h + o @ w[p + "self_attn.o_proj.weight"].T
        else:
            prm = s4_params[i] if s4_params is not None else S4Discrete(s, w, p, opts)
            u = (h if opts.s4_input_unnormed else x) @ w[p + "s4.in_proj.weight"].T  # [T, H]
            y, cache[i] = s4_mix(prm, u, cache[i], mode, opts, check, layer_outputs)
            h = h + gelu(y, opts.activation) @ w[p + "s4.out_proj.weight"].T
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate = x @ w[p + "mlp.gate_proj.weight"].T                               # [T, inter]
        up = x @ w[p + "mlp.up_proj.weight"].T
        h = h + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(h, w["model.norm.weight"], eps)
    return x @ w["lm_head.weight"].T                                             # [T, vocab]


def forward(shape, w, ids, opts=CORRECT, layer_outputs=None):
    """One-shot causal forward over ids at positions 0..T-1 (S4 by convolution, cross-checked
    against the recurrence in every layer); returns logits [T, vocab] (float64)."""
    return forward_chunk(shape, w, ids, 0, new_cache(shape), "convolution", opts,
                         layer_outputs=layer_outputs)


def forward_chunked(shape, w, ids, chunks):
    """The same forward in consecutive chunks [(length, S4 mode)] that carry the KV caches and
    the S4 states from one chunk to the next."""
    assert sum(n for n, _ in chunks) == ids.shape[0]
    cache = new_cache(shape)
    rows, start = [], 0
    for n, mode in chunks:
        rows.append(forward_chunk(shape, w, ids[start:start + n], start, cache, mode))
        start += n
    return torch.cat(rows)


def forward_float32(shape, w64, ids):
    """A float32 engine simulation: float32 weights and activations, S4 parameters discretised in
    float64 then rounded, complex64 recurrence. Estimates what a float32 engine can match."""
    w32 = {n: t.to(torch.float32) for n, t in w64.items()}
    params = {i: S4Discrete(shape, w64, f"model.layers.{i}.").to(torch.float32)
              for i, kind in enumerate(shape.layer_types) if kind == "s4"}
    cache = new_cache(shape, torch.float32)
    return forward_chunk(shape, w32, ids, 0, cache, "recurrent", s4_params=params, check=False)


# ----------------------------------------------------------------------------------------------
# Self-checks


def self_check_hippo():
    # docs/math.md section 7, oracle 1: N = 4 LegS matrix and B.
    a, b = hippo_legs(4)
    r = math.sqrt
    expected = np.array([[-1, 0, 0, 0], [-r(3), -2, 0, 0], [-r(5), -r(15), -3, 0],
                         [-r(7), -r(21), -r(35), -4]])
    assert np.max(np.abs(a - expected)) <= 1e-14
    assert np.max(np.abs(b - np.array([1, r(3), r(5), r(7)]))) <= 1e-15
    # Oracle 2: the first column of A is -B. Oracle 3: eig(A) = {-1..-N}.
    for n in (4, 8):
        a, b = hippo_legs(n)
        assert np.max(np.abs(a[:, 0] + b)) <= 1e-15
        eig = np.sort(np.linalg.eigvals(a).real)
        assert np.max(np.abs(eig - (-np.arange(n, 0, -1)))) <= 1e-9
    # DPLR identities (asserted inside s4d_legs) for several sizes, including the fixtures'.
    for n in (2, 4, 8, 16, 32):
        lam, bt = s4d_legs(n)
        assert lam.shape == (n // 2,) and np.all(lam.imag > 0) and np.all(np.diff(lam.imag) > 0)
        assert np.all(lam.real == -0.5)
    # Oracle 16: S4D-Inv (N = 64) and S4D-Lin.
    inv = s4d_inv(64)
    assert abs(inv[0] - (-0.5 + 1283.4255j)) < 1e-4 and abs(inv[1] - (-0.5 + 414.22727j)) < 1e-5
    assert abs(inv[31] - (-0.5 + 0.323362j)) < 1e-6
    assert np.allclose(s4d_lin(8), -0.5 + 1j * math.pi * np.arange(4), rtol=0, atol=1e-15)


def self_check_conjugate_pairs():
    """2 Re of the kept M modes == the full 2M-mode diagonal system with conjugate C."""
    n = 8
    lam, bt = s4d_legs(n)
    gen = torch.Generator().manual_seed(31)
    c = torch.complex(torch.randn(n // 2, generator=gen, dtype=torch.float64),
                      torch.randn(n // 2, generator=gen, dtype=torch.float64))
    u = torch.randn(20, generator=gen, dtype=torch.float64)
    dt = 0.07
    lam_t, b_t = torch.from_numpy(lam), torch.from_numpy(bt)
    lam_full = torch.cat([lam_t, lam_t.conj()])
    b_full, c_full = torch.cat([b_t, b_t.conj()]), torch.cat([c, c.conj()])
    abar, bbar = torch.exp(dt * lam_full), (torch.exp(dt * lam_full) - 1) / lam_full * b_full
    x = torch.zeros(n, dtype=torch.complex128)
    half = torch.zeros(n // 2, dtype=torch.complex128)
    for k in range(u.shape[0]):
        x = abar * x + bbar * u[k]
        half = abar[:n // 2] * half + bbar[:n // 2] * u[k]
        full_y = (c_full * x).sum()
        assert abs(full_y.imag.item()) <= 1e-12
        assert abs(full_y.real.item() - 2 * (c * half).sum().real.item()) <= 1e-12


class _Params:
    pass


def _random_params(gen, h, m, method):
    """Random stable S4D parameters (float64), discretised with `method`."""
    lam = torch.complex(-torch.rand(h, m, generator=gen, dtype=torch.float64) - 0.05,
                        4 * torch.randn(h, m, generator=gen, dtype=torch.float64))
    b = torch.complex(torch.randn(h, m, generator=gen, dtype=torch.float64),
                      torch.randn(h, m, generator=gen, dtype=torch.float64))
    dt = torch.exp(torch.empty(h, dtype=torch.float64).uniform_(
        math.log(0.01), math.log(0.3), generator=gen))
    w = {
        "s4.log_dt": torch.log(dt),
        "s4.A_real": lam.real, "s4.A_imag": lam.imag,
        "s4.B": torch.stack([b.real, b.imag], dim=-1),
        "s4.C": torch.randn(h, m, 2, generator=gen, dtype=torch.float64),
        "s4.D": torch.randn(h, generator=gen, dtype=torch.float64),
    }
    sh = _Params()
    sh.discretization = method
    return S4Discrete(sh, w, ""), lam, b, dt


def self_check_s4_views():
    gen = torch.Generator().manual_seed(32)
    h, m, length = 5, 8, 64
    for method in ("zoh", "bilinear"):
        prm, lam, b, dt = _random_params(gen, h, m, method)
        # Oracle 9: every discretisation keeps the continuous equilibrium s* = -B u / lambda.
        u0 = 0.7
        fixed = -b * u0 / lam
        assert torch.max(torch.abs(prm.abar * fixed + prm.bbar * u0 - fixed)).item() <= 1e-12
        # Stability: |Abar| < 1.
        assert torch.max(torch.abs(prm.abar)).item() < 1.0
        u = torch.randn(length, h, generator=gen, dtype=torch.float64)
        zero = torch.zeros(h, m, dtype=torch.complex128)
        y_rec, s_rec = s4_recurrence(prm, u, zero)
        y_conv, s_conv = s4_convolution(prm, u, zero)
        assert close(y_conv, y_rec, 1e-12) and close(s_conv, s_rec, 1e-12), method
        # Oracle 11: the unpadded (circular) convolution is wrong.
        y_circ, _ = s4_convolution(prm, u, zero, circular=True)
        assert torch.max(torch.abs(y_circ - y_rec)).item() > CIRCULAR_MIN_DIFF
        # Chunks with a carried state, convolution chunks == one recurrence, any split.
        for split in (1, 17, 63):
            ya, sa = s4_convolution(prm, u[:split], zero)
            yb, sb = s4_convolution(prm, u[split:], sa)
            assert close(torch.cat([ya, yb]), y_rec, 1e-12) and close(sb, s_rec, 1e-12)
        # The kernel's first entries by hand: K_0 = 2 Re C Bbar, K_1 = 2 Re C Bbar Abar.
        kern = s4_kernel(prm, 3)
        c = torch.complex(prm.c.real, prm.c.imag)
        assert close(kern[:, 0], 2 * (c * prm.bbar).sum(-1).real)
        assert close(kern[:, 1], 2 * (c * prm.bbar * prm.abar).sum(-1).real)
    # ZOH and bilinear agree to O((dt lambda)^3) for tiny steps and differ otherwise.
    lam = torch.tensor([-0.5 + 3j], dtype=torch.complex128)
    for dt, lo, hi in ((1e-3, 0.0, 1e-8), (0.3, 1e-3, 1.0)):
        zoh = torch.exp(dt * lam)
        bil = (1 + dt * lam / 2) / (1 - dt * lam / 2)
        assert lo <= torch.abs(zoh - bil).item() <= hi


def run_self_checks():
    self_check_hippo()
    self_check_conjugate_pairs()
    self_check_s4_views()
    with tempfile.TemporaryDirectory() as tmp:
        self_check_safetensors_roundtrip(tmp)


# ----------------------------------------------------------------------------------------------
# Fixture generation


def mistakes(shape):
    """Common implementation mistakes, each of which the fixture must detect: name -> Options."""
    out = {}
    if "s4" in shape.layer_types:
        other = "bilinear" if shape.discretization == "zoh" else "zoh"
        out.update({
            "circular_fft_conv": Options(circular=True),
            f"{other}_instead_of_{shape.discretization}": Options(discretization=other),
            "bbar_dt_times_b": Options(bbar_euler=True),
            "dt_softplus": Options(dt_softplus=True),
            "re_lambda_minus_exp": Options(re_lambda_neg_exp=True),
            "conj_lambda": Options(conj_lambda=True),
            "conj_C": Options(conj_c=True),
            "B_imag_ignored": Options(b_real_only=True),
            "re_without_factor_2": Options(re_factor=1.0),
            "no_ssm_kernel_(D_only)": Options(no_kernel=True),
            "no_D_skip": Options(no_d=True),
            "y_from_previous_state": Options(output_before_update=True),
            "s4_input_not_normed": Options(s4_input_unnormed=True),
            "no_gelu": Options(activation="identity"),
            "silu_instead_of_gelu": Options(activation="silu"),
            "gelu_tanh_approximation": Options(activation="gelu_tanh"),
            "complex_as_[H,2,M]_planes": Options(planar_complex=True),
        })
    if "attention" in shape.layer_types:
        out["interleaved_rope"] = Options(rope=rope_interleaved)
        out["no_rope"] = Options(rope=lambda x, positions, theta: x)
    return out


# A float32 engine lands about 1e-6 from the logits; a mistake must move them far more than that.
# Two mistakes are subtle by nature: Re lambda = -exp(-1/2) = -0.61 instead of -0.5 changes the
# decay per step by at most dt * 0.11 <= 0.011, and the tanh GELU is within 1e-3 of the erf one.
MISTAKE_MIN_DIFF = {"re_lambda_minus_exp": 1e-2, "gelu_tanh_approximation": 1e-4}
MISTAKE_DEFAULT_MIN_DIFF = 0.05
# Reported but not required to be detectable. Every channel shares the S4D-LegS init (as in S4D),
# so an engine that reads A / B of channel 0 for all channels passes these fixtures (diff 0).
REPORTED_ONLY = {
    "rms_norm_eps_1e-6": Options(eps=1e-6),
    "A_B_of_channel_0_for_all": Options(channel0_a_b=True),
}


def fixture_sensitivity(shape, w, ids, logits):
    diffs, reported = {}, {}
    for name, opts in mistakes(shape).items():
        diffs[name] = torch.max(torch.abs(forward(shape, w, ids, opts) - logits)).item()
        floor = MISTAKE_MIN_DIFF.get(name, MISTAKE_DEFAULT_MIN_DIFF)
        assert diffs[name] > floor, f"fixture cannot detect {name}: max diff {diffs[name]}"
    for name, opts in REPORTED_ONLY.items():
        reported[name] = torch.max(torch.abs(forward(shape, w, ids, opts) - logits)).item()
    return diffs, reported


def build_fixture(name, spec, out_dir, verbose):
    config = spec["config"]
    shape = Shape(config)
    weights = make_weights(shape, spec["seed"], spec["matrix_gain"])
    exact = exact_weights(weights)
    ids = input_ids(shape.vocab, spec["num_tokens"], spec["seed"] + 1)
    layer_outputs = []
    logits = forward(shape, exact, ids, layer_outputs=layer_outputs)            # [T, vocab] f64
    t = ids.shape[0]
    # Token by token, carrying the KV caches and the S4 states (recurrent mode).
    assert close(forward_chunked(shape, exact, ids, [(1, "recurrent")] * t), logits, 1e-10), \
        "token-by-token forward != one-shot forward"
    # Chunked prefill split at `split` (convolution mode with a carried state) == one-shot, and a
    # prefill followed by 8 recurrent decode steps, as the engine test runs it.
    split = spec["split"]
    assert close(forward_chunked(shape, exact, ids, [(split, "convolution"),
                                                      (t - split, "convolution")]),
                  logits, 1e-10), "chunked prefill != one-shot forward"
    assert close(forward_chunked(shape, exact, ids, [(t - 8, "convolution")]
                                  + [(1, "recurrent")] * 8),
                  logits, 1e-10), "prefill + decode != one-shot forward"
    assert close(forward(shape, exact, ids[:split]), logits[:split]), "prefix != full"
    # The circular (unpadded) FFT convolution is visibly wrong in every S4 layer of this fixture.
    circ = []
    s4_layers = [i for i, k in enumerate(shape.layer_types) if k == "s4"]
    assert len(layer_outputs) == len(s4_layers)
    for i, (u, state, y) in zip(s4_layers, layer_outputs):
        prm = S4Discrete(shape, exact, f"model.layers.{i}.")
        y_circ, _ = s4_convolution(prm, u, state, circular=True)
        circ.append(torch.max(torch.abs(y_circ - y)).item())
        assert circ[-1] > CIRCULAR_MIN_DIFF, f"layer {i}: circular conv differs by only {circ[-1]}"
    diffs, reported = fixture_sensitivity(shape, exact, ids, logits)
    f32_diff = torch.max(torch.abs(forward_float32(shape, exact, ids) - logits)).item()

    d = pathlib.Path(out_dir) / name
    write_fixture_files(d, config, {n: ("F32", w.numpy()) for n, w in weights.items()},
                        ids, logits)

    # Read back what was written and make sure the reference reproduces it from the files alone.
    reread = reread_f32_weights(d / "model.safetensors", weight_shapes(shape))
    assert torch.equal(forward(shape, reread, ids), logits), "file does not reproduce logits"
    assert Shape(json.loads((d / "config.json").read_text())).__dict__ == shape.__dict__
    expected = read_safetensors(d / "expected.safetensors")
    assert np.array_equal(expected["input_ids"][1], ids.numpy())

    if verbose:
        probs = torch.softmax(logits, dim=-1)
        print(f"{d}:")
        for f in FIXTURE_FILES:
            print(f"  {f:22s} {(d / f).stat().st_size:6d} bytes")
        print(f"  layer_types {shape.layer_types}, s4_discretization {shape.discretization}, "
              f"d_state {shape.d_state} (M = {shape.modes})")
        print(f"  input_ids {ids.tolist()}")
        lam = torch.complex(exact[f"model.layers.{s4_layers[0]}.s4.A_real"][0],
                            exact[f"model.layers.{s4_layers[0]}.s4.A_imag"][0])
        bq = exact[f"model.layers.{s4_layers[0]}.s4.B"][0]
        print("  S4D-LegS lambda (stored f32): "
              + ", ".join(f"{z.real:+.1f}{z.imag:+.9f}i" for z in lam.tolist()))
        print("  S4D-LegS B~ (stored f32):     "
              + ", ".join(f"{re:+.7f}{im:+.7f}i" for re, im in bq.tolist()))
        for i in s4_layers:
            prm = S4Discrete(shape, exact, f"model.layers.{i}.")
            print(f"  layer {i}: dt in [{prm.dt.min().item():.4g}, {prm.dt.max().item():.4g}], "
                  f"|Abar| in [{prm.abar.abs().min().item():.5f}, "
                  f"{prm.abar.abs().max().item():.5f}], "
                  f"max |dt Im lambda| {(prm.dt[:, None] * lam.imag).abs().max().item():.3f}")
        print("  circular (unpadded) FFT conv: max |y change| per S4 layer "
              + ", ".join(f"{x:.3g}" for x in circ))
        print(f"  logits: std {logits.std().item():.3f}, max |.| {logits.abs().max().item():.3f}, "
              f"mean top-1 prob {probs.max(dim=-1).values.mean().item():.3f}")
        print(f"  float32 simulation (complex64 recurrence): max |logit diff| {f32_diff:.3g}")
        print("  max |logit change| under mistakes: "
              + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
        print("  reported only: " + ", ".join(f"{k} {v:.3g}" for k, v in reported.items()))


def generate(out_dir, verbose):
    if verbose:
        lam, bt = s4d_legs(8, report := {})
        print(f"S4D-LegS N=8: max |S + S^T| {report['skew']:.3g}, "
              f"max |Re eig + 1/2| {report['re_dev']:.3g}")
        print("  lambda (float64): " + ", ".join(f"{z.real:+.1f}{z.imag:+.15g}i" for z in lam))
        print("  B~ = V^* B (float64): " + ", ".join(f"{z.real:+.15g}{z.imag:+.15g}i" for z in bt))
    for name, spec in FIXTURES.items():
        build_fixture(name, spec, out_dir, verbose)
    if verbose:
        print(f"largest relative |convolution - recurrence| over all S4 calls: "
              f"{_max_conv_rec_diff[0]:.3g} (tolerance {CONV_VS_RECURRENCE_TOL:g})")


def main():
    return run_cli(__doc__, run_self_checks, generate, FIXTURES, "tools.reference.hybrid_s4")


if __name__ == "__main__":
    sys.exit(main())
