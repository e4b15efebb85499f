"""Recomputes every numbered oracle of docs/math.md §7 in float64 and asserts the value the page
quotes. Run from the repository root: /usr/bin/python3 -m tools.reference.math_oracles

Each function is one oracle (or a few that share a setup). Quoted values are rounded to the digits
docs/math.md prints; tolerances on error sizes are the bounds the page states, not the errors this
build happens to see (those are printed).
"""

import math
import sys

import numpy as np
import torch

r = math.sqrt


def expm(a):
    return torch.linalg.matrix_exp(torch.from_numpy(np.asarray(a, dtype=np.float64))).numpy()


def legs(n, su_scaling=False):
    """HiPPO-LegS, x' = (A x + B u)/t. Paper scaling B_n = sqrt(2n+1); Su's is sqrt(2(2n+1))."""
    a = np.zeros((n, n))
    for i in range(n):
        for k in range(i):
            a[i, k] = -r((2 * i + 1) * (2 * k + 1))
        a[i, i] = -(i + 1)
    b = np.sqrt(2 * np.arange(n) + 1.0) * (r(2) if su_scaling else 1.0)
    return a, b


def legt_su(n, w=1.0):
    """HiPPO-LegT in Su's orthonormal-coefficient form, x' = A x + B u."""
    a = np.zeros((n, n))
    for i in range(n):
        for k in range(n):
            sign = 1.0 if k < i else (-1.0) ** (i - k)
            a[i, k] = -sign * r((2 * i + 1) * (2 * k + 1)) / w
    b = np.sqrt(2.0 * (2 * np.arange(n) + 1)) / w
    return a, b


def legt_lmu(n, w=1.0):
    a = np.zeros((n, n))
    for i in range(n):
        for k in range(n):
            a[i, k] = -(2 * i + 1) / w * (1.0 if k < i else (-1.0) ** (i - k))
    return a, (2 * np.arange(n) + 1.0) / w


def legendre(n, s):
    """p_0..p_{n-1} at points s (Bonnet recurrence): [n, len(s)]."""
    s = np.asarray(s, dtype=np.float64)
    out = [np.ones_like(s), s.copy()]
    for k in range(1, n - 1):
        out.append(((2 * k + 1) * s * out[k] - k * out[k - 1]) / (k + 1))
    return np.array(out[:n])


def orthonormal_legendre(n, s):
    return np.sqrt((2 * np.arange(n)[:, None] + 1) / 2.0) * legendre(n, s)


def discretise(a, b, eps, scheme):
    i = np.eye(a.shape[0])
    if scheme == "forward":
        return i + eps * a, eps * b
    if scheme == "backward":
        m = np.linalg.inv(i - eps * a)
        return m, m @ (eps * b)
    if scheme == "bilinear":
        m = np.linalg.inv(i - eps * a / 2)
        return m @ (i + eps * a / 2), m @ (eps * b)
    assert scheme == "zoh"
    e = expm(eps * a)
    return e, np.linalg.solve(a, (e - i) @ b)


def report(num, text):
    print(f"oracle {num:2d}: {text}")


def oracle_1_to_3():
    a, b = legs(4)
    want = np.array([[-1, 0, 0, 0], [-r(3), -2, 0, 0], [-r(5), -r(15), -3, 0],
                     [-r(7), -r(21), -r(35), -4]])
    assert np.max(np.abs(a - want)) < 1e-15
    assert [round(x, 6) for x in (a[2, 0], a[3, 1], a[3, 2])] == [-2.236068, -4.582576, -5.916080]
    report(1, f"A[2][0] {a[2, 0]:.6f}, A[3][1] {a[3, 1]:.6f}, A[3][2] {a[3, 2]:.6f}, B {b}")
    assert np.array_equal(a[:, 0], -b)
    x = -np.linalg.solve(a, b)
    a2, b2 = legs(4, su_scaling=True)
    x2 = -np.linalg.solve(a2, b2)
    assert np.allclose(x, [1, 0, 0, 0], atol=1e-14) and np.allclose(x2, [r(2), 0, 0, 0], atol=1e-14)
    report(2, f"-A^-1 B = {np.round(x, 15)}, Su's scaling {np.round(x2, 15)}")
    for n in (4, 8):
        a, _ = legs(n)
        ev = np.sort(np.linalg.eigvals(a).real)
        assert np.allclose(ev, -np.arange(n, 0, -1), atol=1e-12)
        ev2 = np.sort(np.linalg.eigvals(expm(math.log(2) * a)).real)
        assert np.allclose(ev2, 2.0 ** -np.arange(n, 0, -1), atol=1e-12)
    report(3, "eig(A) = -1..-N, eig(expm(ln 2 A)) = 2^-1..2^-N (N = 4, 8)")


def oracle_4():
    n, lam = 16, 0.37
    a, _ = legs(n)
    v = np.random.default_rng(4).standard_normal(n)
    k = np.arange(n)
    fast = k * v - np.sqrt(2 * k + 1) * np.cumsum(np.sqrt(2 * k + 1) * v)
    d1 = np.max(np.abs(fast - a @ v))
    z = np.zeros(n)
    s_prev = 0.0
    for i in range(n):
        s = ((1 - lam * i) * s_prev + r(2 * i + 1) * v[i]) / (1 + lam * i + lam)
        z[i] = (s - s_prev) / r(2 * i + 1)
        s_prev = s
    d2 = np.max(np.abs(z - np.linalg.solve(np.eye(n) - lam * a, v)))
    assert d1 < 1e-12 and d2 < 1e-12
    report(4, f"O(N) matvec diff {d1:.2g}, O(N) solve diff {d2:.2g} (N = 16, lambda = 0.37)")


def oracle_5():
    n, t0, t1 = 8, 0.5, 3.0
    a, b = legs(n, su_scaling=True)
    u = np.polynomial.Polynomial([0.3, -1.0, 0.7, 0.25])              # a cubic
    nodes, weights = np.polynomial.legendre.leggauss(20)
    g = orthonormal_legendre(n, nodes)

    def coeffs(t):
        return g @ (weights * u((nodes + 1) * t / 2))

    def f(t, x):
        return (a @ x + b * u(t)) / t

    x, t, steps = coeffs(t0), t0, 5000
    h = (t1 - t0) / steps
    for _ in range(steps):                                             # classical RK4
        k1 = f(t, x)
        k2 = f(t + h / 2, x + h / 2 * k1)
        k3 = f(t + h / 2, x + h / 2 * k2)
        k4 = f(t + h, x + h * k3)
        x, t = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + h
    err = np.max(np.abs(x - coeffs(t1)))
    assert err < 1e-10
    report(5, f"LegS state vs exact Legendre coefficients of a cubic at T = 3: {err:.2g}")


def oracle_6():
    d, lam = 9, 3
    s = np.zeros(d)
    for n in range(d):
        if n >= lam - 1:
            s[n] = ((-1) ** (d - n - 1) * math.factorial(d - lam) * math.factorial(n + lam)
                    / (math.factorial(d + lam - 1) * math.factorial(n - lam + 1)))
    v = np.array([(s[n] - (s[n - 1] if n else 0.0)) / r(2 * n + 1) for n in range(d)])
    a, _ = legs(d)
    res = np.max(np.abs(-a @ v - lam * v)) / np.max(np.abs(v))
    assert res < 1e-12 and np.max(np.abs(v)) > 0
    report(6, f"closed-form eigenvector (lambda = 3, d = 9): |-Av - 3v| / |v| = {res:.2g}")


def oracle_7():
    a, b = legt_lmu(4)
    want = np.array([[-1, 1, -1, 1], [-3, -3, 3, -3], [-5, -5, -5, 5], [-7, -7, -7, -7]])
    assert np.array_equal(a, want) and np.array_equal(b, [1, 3, 5, 7])
    n = np.arange(4)
    a_h = np.array([[(2 * i + 1) * ((-1.0) ** (i - k) if i >= k else 1.0) for k in n] for i in n])
    b_h = (2 * n + 1) * (-1.0) ** n
    dm = np.diag((-1.0) ** n)
    assert np.array_equal(dm @ a @ dm, -a_h) and np.array_equal(dm @ b, b_h)
    report(7, "LMU-form LegT (N = 4, w = 1) as quoted; D A D = -A_H, D B = B_H")


def oracle_8():
    n, eps, t_end = 24, 1e-3, 4.0
    a, b = legt_su(n)
    ad, bd = discretise(a, b, eps, "zoh")
    x = np.zeros(n)
    steps = int(round(t_end / eps))
    for k in range(steps):
        t = (k + 0.5) * eps                     # u held over [k eps, (k+1) eps), sampled mid-step
        x = ad @ x + bd * (math.sin(4 * t) + 0.5 * math.cos(9 * t))
    s = np.linspace(-1, 1, 201)
    recon = orthonormal_legendre(n, s).T @ x
    tt = (s + 1) / 2 + t_end - 1
    err = np.abs(recon - (np.sin(4 * tt) + 0.5 * np.cos(9 * tt)))
    interior = np.max(err[1:-1])
    assert interior < 1e-4 and err[-1] < 1e-4
    report(8, f"LegT N = 24 ZOH reconstruction: interior max error {interior:.2g}, "
              f"at s = 1 {err[-1]:.2g}")


def oracle_9_10():
    a, b = legt_su(6)
    x_star = -np.linalg.solve(a, b)
    worst = 0.0
    for sch in ("forward", "backward", "bilinear", "zoh"):
        ad, bd = discretise(a, b, 0.05, sch)
        worst = max(worst, np.max(np.abs(ad @ x_star + bd - x_star)))
    assert worst < 1e-12
    report(9, f"every scheme keeps x* = -A^-1 B u fixed (LegT N = 6, eps = 0.05): {worst:.2g}")
    n, eps = 8, 0.1
    a, b = legs(n)
    ad, _ = discretise(a, b, eps, "bilinear")
    k = np.arange(n) + 1
    want = (1 - eps * k / 2) / (1 + eps * k / 2)
    assert np.max(np.abs(np.sort(np.linalg.eigvals(ad).real) - np.sort(want))) < 1e-12
    report(10, "bilinear LegS Abar has eigenvalues (1 - eps(n+1)/2)/(1 + eps(n+1)/2)")


def s4_setup(n=16, length=64, eps=0.1, seed=11):
    rng = np.random.default_rng(seed)
    a, b = legs(n)
    c = rng.standard_normal(n)
    u = rng.standard_normal(length)
    ad, bd = discretise(a, b, eps, "bilinear")
    return a, b, c, u, ad, bd


def kernel_by_powers(c, ad, bd, length):
    out, v = [], bd.copy()
    for _ in range(length):
        out.append(c @ v)
        v = ad @ v
    return np.array(out)


def oracle_11_12():
    length, eps = 64, 0.1
    a, b, c, u, ad, bd = s4_setup(length=length, eps=eps)
    x, y_rec = np.zeros(len(b)), []
    for uk in u:
        x = ad @ x + bd * uk
        y_rec.append(c @ x)
    y_rec = np.array(y_rec)
    kern = kernel_by_powers(c, ad, bd, length)
    y_pad = np.fft.irfft(np.fft.rfft(kern, 2 * length) * np.fft.rfft(u, 2 * length), 2 * length)
    y_circ = np.fft.irfft(np.fft.rfft(kern) * np.fft.rfft(u), length)
    d_pad = np.max(np.abs(y_pad[:length] - y_rec))
    d_circ = np.max(np.abs(y_circ - y_rec))
    assert d_pad < 1e-12 and d_circ > 1e-2
    report(11, f"recurrence vs padded FFT conv {d_pad:.2g}; vs unpadded (circular) {d_circ:.2g}")
    # Oracle 12: the truncated generating function at the roots of unity.
    n = len(b)
    i = np.eye(n)
    z = np.exp(-2j * np.pi * np.arange(length) / length)
    g_direct = np.array([c @ (i - np.linalg.matrix_power(ad, length)) @ np.linalg.solve(i - zl * ad, bd)
                         for zl in z])
    d1 = np.max(np.abs(np.fft.fft(kern) - g_direct))
    c_tilde = (i - np.linalg.matrix_power(ad, length)).T @ c
    g_closed = np.array([2 * c_tilde @ np.linalg.solve((2 / eps) * (1 - zl) * i - (1 + zl) * a, b)
                         for zl in z])
    k_back = np.fft.ifft(g_closed)
    d2 = np.max(np.abs(k_back.real - kern))
    assert d1 < 1e-12 and d2 < 1e-12 and np.max(np.abs(k_back.imag)) < 1e-12
    report(12, f"fft(K) vs G_L(z) {d1:.2g}; closed form + inverse FFT vs K {d2:.2g}, "
               f"imaginary part {np.max(np.abs(k_back.imag)):.2g}")


def nplr(n):
    # Built from the products v_n v_k (as the engine and tools/reference/hybrid_s4.py do), so that
    # S + S^T = 0 holds exactly rather than to rounding.
    _, b = legs(n)
    v = np.sqrt(2 * np.arange(n) + 1.0)
    vvt = np.outer(v, v)
    np.fill_diagonal(vvt, 2.0 * np.arange(n) + 1.0)
    a = np.tril(-vvt, -1) - np.diag(np.arange(n) + 1.0)
    s = a + 0.5 * vvt + 0.5 * np.eye(n)
    omega, vecs = np.linalg.eigh(-1j * s)          # S = V (i Omega) V^*
    return a, b, v, s, -0.5 + 1j * omega, vecs


def oracle_13():
    n = 16
    a, b, v, s, lam, vecs = nplr(n)
    assert np.max(np.abs(s + s.T)) == 0.0
    p = np.sqrt(np.arange(n) + 0.5)
    re_dev = np.max(np.abs(np.linalg.eigvals(a + np.outer(p, p)).real + 0.5))
    assert re_dev < 1e-12
    pt = vecs.conj().T @ p
    recon = vecs @ (np.diag(lam) - np.outer(pt, pt.conj())) @ vecs.conj().T
    d = np.max(np.abs(recon - a))
    assert d < 1e-12
    report(13, f"S + S^T = 0 exactly; max |Re eig(A + PP^T) + 1/2| {re_dev:.2g}; "
               f"A = V(Lambda - pp^*)V^* to {d:.2g}")


def oracle_14():
    n, eps = 16, 0.1
    a, b, v, s, lam, vecs = nplr(n)
    rng = np.random.default_rng(14)
    c = rng.standard_normal(n)
    p = np.sqrt(np.arange(n) + 0.5)
    bt, pt = vecs.conj().T @ b, vecs.conj().T @ p
    for length, form in ((64, "singularity-free"), (63, "paper")):
        ad, bd = discretise(a, b, eps, "bilinear")
        kern = kernel_by_powers(c, ad, bd, length)
        ct = vecs.conj().T @ ((np.eye(n) - np.linalg.matrix_power(ad, length)).T @ c)
        z = np.exp(-2j * np.pi * np.arange(length) / length)
        g = []
        for zl in z:
            if form == "paper":
                den = (2 / eps) * (1 - zl) / (1 + zl) - lam
                k00, k01 = np.sum(ct.conj() * bt / den), np.sum(ct.conj() * pt / den)
                k10, k11 = np.sum(pt.conj() * bt / den), np.sum(pt.conj() * pt / den)
                g.append(2 / (1 + zl) * (k00 - k01 * k10 / (1 + k11)))
            else:
                den = (2 / eps) * (1 - zl) - (1 + zl) * lam
                k00, k01 = np.sum(ct.conj() * bt / den), np.sum(ct.conj() * pt / den)
                k10, k11 = np.sum(pt.conj() * bt / den), np.sum(pt.conj() * pt / den)
                g.append(2 * (k00 - (1 + zl) * k01 * k10 / (1 + (1 + zl) * k11)))
        d = np.max(np.abs(np.fft.ifft(np.array(g)).real - kern))
        assert d < 1e-12, (length, d)
        report(14, f"Cauchy + Woodbury kernel vs powers, L = {length} ({form} form): {d:.2g}")


def oracle_15():
    n = 8
    a, b = legs(n)
    c = np.random.default_rng(15).standard_normal(n)
    for eps in (0.05, 0.5):
        ad, bd = discretise(a, b, eps, "bilinear")
        total = kernel_by_powers(c, ad, bd, 4000).sum()
        assert abs(total - c[0]) < 1e-10, (eps, total, c[0])
    report(15, "sum of the LegS bilinear kernel = C_0 (eps = 0.05, 0.5; 4000 terms)")


def oracle_16():
    rng = np.random.default_rng(16)
    m, length, dt = 8, 40, 0.05
    lam = -0.5 + 1j * np.pi * np.arange(m)
    bm = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    cm = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    u = rng.standard_normal(length)
    abar = np.exp(dt * lam)
    bbar = (abar - 1) / lam * bm
    kern = np.array([2 * np.sum(cm * bbar * abar ** k).real for k in range(length)])
    x, y = np.zeros(m, dtype=complex), []
    for uk in u:
        x = abar * x + bbar * uk
        y.append(2 * np.sum(cm * x).real)
    conv = np.array([np.dot(kern[:k + 1][::-1], u[:k + 1]) for k in range(length)])
    d = np.max(np.abs(conv - np.array(y)))
    assert d < 1e-12
    n = 64
    inv = (n / np.pi) * (n / (2 * np.arange(n // 2) + 1) - 1)
    assert (round(inv[0], 4), round(inv[1], 5), round(inv[31], 6)) == (1283.4255, 414.22727, 0.323362)
    report(16, f"S4D ZOH kernel vs complex-diagonal recurrence {d:.2g}; S4D-Inv N = 64: "
               f"Im lambda_0 {inv[0]:.4f}, lambda_1 {inv[1]:.5f}, lambda_31 {inv[31]:.6f}")


def rope_matrix(pos, d, base=10000.0):
    r_ = np.zeros((d, d))
    for i in range(d // 2):
        th = pos * base ** (-2 * i / d)
        r_[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[math.cos(th), -math.sin(th)],
                                                 [math.sin(th), math.cos(th)]]
    return r_


def oracle_17_to_19():
    d = 8
    rng = np.random.default_rng(17)
    q, k = rng.standard_normal(d), rng.standard_normal(d)
    assert np.allclose(rope_matrix(3, d).T @ rope_matrix(10, d), rope_matrix(7, d), atol=1e-14)
    s1 = (rope_matrix(5, d) @ q) @ (rope_matrix(9, d) @ k)
    s2 = (rope_matrix(105, d) @ q) @ (rope_matrix(109, d) @ k)
    assert abs(s1 - s2) < 1e-12
    report(17, "R_m^T R_n = R_(n-m); scores unchanged by a common shift of 100")
    theta = 1e4 ** (-2 * np.arange(64) / 128)
    assert (round(theta[1], 7), round(theta[2], 7), float(f"{theta[63]:.6e}")) == \
        (0.8659643, 0.7498942, 1.154782e-4)
    report(18, f"theta_1 {theta[1]:.7f}, theta_2 {theta[2]:.7f}, theta_63 {theta[63]:.6e}")
    m = np.arange(4096)
    f = np.cos(np.outer(m, theta)).sum(axis=1)
    first_neg = int(np.argmax(f < 0))
    assert first_neg == 1707
    # Smallest integer base b (scanning up from 2) with f_b(m) >= 0 for all m < 1024.
    ms = np.arange(1024, dtype=np.float64)
    i = np.arange(64)
    b_star = None
    for lo in range(2, 6000, 500):
        bases = np.arange(lo, lo + 500, dtype=np.float64)
        th = bases[:, None] ** (-2 * i[None, :] / 128)                    # [nb, 64]
        mins = np.cos(ms[None, :, None] * th[:, None, :]).sum(axis=2).min(axis=1)
        ok = np.nonzero(mins >= 0)[0]
        if ok.size:
            b_star = int(bases[ok[0]])
            break
    assert b_star == 4294, b_star           # so b* lies in (4293, 4294]
    half = np.cos(np.outer(np.arange(200000), 1e4 ** (-4 * np.arange(32) / 128))).sum(axis=1) + 32
    assert half.min() >= 0
    report(19, f"b = 1e4, d = 128: f_b first negative at m = {first_neg}; smallest integer b* "
               f"for L = 1024 is {b_star}; partial rotation keeps f >= 0")


def oracle_20():
    h, g = 32, 8
    assert [s // (h // g) for s in range(h)] == [s // 4 for s in range(32)]
    report(20, "GQA h = 32, g = 8: query head s -> kv head s // 4")


def oracle_21():
    rng = np.random.default_rng(21)
    d, nh, dh, dr, dc, dq, t = 64, 4, 16, 8, 32, 48, 7
    w_dq = rng.standard_normal((dq, d)) / r(d)
    w_uq = rng.standard_normal((nh * dh, dq)) / r(dq)
    w_qr = rng.standard_normal((nh * dr, dq)) / r(dq)
    w_dkv = rng.standard_normal((dc, d)) / r(d)
    w_uk = rng.standard_normal((nh * dh, dc)) / r(dc)
    w_kr = rng.standard_normal((dr, d)) / r(d)
    w_uv = rng.standard_normal((nh * dh, dc)) / r(dc)
    hs = rng.standard_normal((t, d))

    def rope(x, pos):                                    # x: [..., dr] interleaved pairs
        return rope_matrix(pos, dr) @ x

    def run(dtype):
        cast = {k: v.astype(dtype) for k, v in locals_.items()}
        cq = hs.astype(dtype) @ cast["w_dq"].T
        ckv = hs.astype(dtype) @ cast["w_dkv"].T                                     # [t, dc]
        kr = np.stack([rope(hs[j].astype(dtype) @ cast["w_kr"].T, j) for j in range(t)])
        qc = (cq @ cast["w_uq"].T).reshape(t, nh, dh)
        qr = np.stack([np.stack([rope(v, j) for v in (cq[j] @ cast["w_qr"].T).reshape(nh, dr)])
                       for j in range(t)])
        scale = 1 / r(dh + dr)
        exp_out = np.zeros((t, nh, dh), dtype)
        abs_out = np.zeros((t, nh, dh), dtype)
        kc = (ckv @ cast["w_uk"].T).reshape(t, nh, dh)
        vc = (ckv @ cast["w_uv"].T).reshape(t, nh, dh)
        for i in range(t):
            for hh in range(nh):
                sc = (kc[:i + 1, hh] @ qc[i, hh] + kr[:i + 1] @ qr[i, hh]) * scale
                pr = np.exp(sc - sc.max())
                pr /= pr.sum()
                exp_out[i, hh] = pr @ vc[:i + 1, hh]
                wk = cast["w_uk"][hh * dh:(hh + 1) * dh]                          # [dh, dc]
                wv = cast["w_uv"][hh * dh:(hh + 1) * dh]
                q_lat = wk.T @ qc[i, hh]                                          # [dc]
                sc2 = (ckv[:i + 1] @ q_lat + kr[:i + 1] @ qr[i, hh]) * scale
                pr2 = np.exp(sc2 - sc2.max())
                pr2 /= pr2.sum()
                abs_out[i, hh] = wv @ (pr2 @ ckv[:i + 1])
        return exp_out, abs_out

    locals_ = dict(w_dq=w_dq, w_uq=w_uq, w_qr=w_qr, w_dkv=w_dkv, w_uk=w_uk, w_kr=w_kr, w_uv=w_uv)
    e64, a64 = run(np.float64)
    _, a32 = run(np.float32)
    d64 = np.max(np.abs(e64 - a64))
    rel32 = np.max(np.abs(a32 - e64)) / np.max(np.abs(e64))
    assert d64 < 1e-13 and rel32 < 1e-5
    report(21, f"absorbed vs expanded MLA: float64 {d64:.2g}; float32 absorbed vs float64 "
               f"relative {rel32:.2g}")


def oracle_22_23():
    nh = dh = 128
    sizes = (2 * nh * dh, 2 * 8 * dh, 2 * dh, 512 + 64)
    assert sizes == (32768, 2048, 256, 576)
    assert round(576 / 32768, 6) == 0.017578 and 576 * 60 == 34560 and 34560 * 2 == 69120
    report(22, f"MHA/GQA(8)/MQA/MLA elements: {sizes}; MLA/MHA {576 / 32768:.6f}")
    base = 1 / r(192)
    mscale = 0.1 * 0.707 * math.log(40) + 1
    assert (round(base, 7), round(mscale, 7), round(base * mscale ** 2, 6)) == \
        (0.0721688, 1.2608038, 0.114721)
    report(23, f"1/sqrt(192) {base:.7f}; mscale {mscale:.7f}; scaled {base * mscale ** 2:.6f}")


def softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def sparsemax(x):
    z = np.sort(x)[::-1]
    k = np.arange(1, len(x) + 1)
    lam = (np.cumsum(z) - 1) / k
    kk = np.max(np.nonzero(z >= lam)[0])
    return np.maximum(x - lam[kk], 0), lam[kk]


def entmax15(x):
    z = np.sort(np.asarray(x) / 2)[::-1]
    for k in range(1, len(z) + 1):
        mu = z[:k].mean()
        var = (z[:k] ** 2).mean() - mu ** 2
        lam = mu - r(1 / k - var) if 1 / k - var >= 0 else None
        nxt = z[k] if k < len(z) else -np.inf
        if lam is not None and z[k - 1] >= lam >= nxt:
            return np.maximum(np.asarray(x) / 2 - lam, 0) ** 2
    raise AssertionError("no threshold")


def entmax_bisect(x, alpha, iters=200):
    beta = alpha - 1
    z = beta * np.asarray(x, dtype=np.float64)
    z = z - z.max() + 1
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        if (np.maximum(z - mid, 0) ** (1 / beta)).sum() > 1:
            lo = mid
        else:
            hi = mid
    p = np.maximum(z - (lo + hi) / 2, 0) ** (1 / beta)
    return p / p.sum()


def taylor2(x):
    f = 1 + np.asarray(x, dtype=np.float64) + np.asarray(x, dtype=np.float64) ** 2 / 2
    return f / f.sum()


def rounded(v, digits=6):
    return [round(float(x), digits) for x in v]


def oracle_24_to_30():
    p = softmax(np.array([1.0, 2, 3]))
    assert rounded(p) == [0.090031, 0.244728, 0.665241] and round(1 - (p ** 2).sum(), 7) == 0.4894569
    report(24, f"softmax([1,2,3]) {rounded(p)}; 1 - sum p^2 {1 - (p ** 2).sum():.7f}")
    s, lam = sparsemax(np.array([0.5, 0.3, -1]))
    assert rounded(s) == [0.6, 0.4, 0] and round(lam, 12) == -0.1
    s2, lam2 = sparsemax(np.array([0.1, 0, -0.1]))
    assert rounded(s2) == [0.433333, 0.333333, 0.233333] and abs(lam2 + 1 / 3) < 1e-15
    assert rounded(sparsemax(np.array([1.0, 2, 3]))[0]) == [0, 0, 1]
    x = np.array([10.0, 0, -1])
    sp, lam = sparsemax(x)
    support = sp > 0
    loss = 0.5 - x[0] + 0.5 * np.sum(x[support] ** 2 - lam ** 2)
    assert loss == 0.0
    report(25, "sparsemax oracles hold; loss at [10, 0, -1] with target 0 is 0")
    e1 = entmax15([1.0, 2, 3])
    e2 = entmax15([1.5, 1, 0.2, -2])
    assert rounded(e1) == [0, 0.169281, 0.830719]
    assert rounded(e2) == [0.658587, 0.315320, 0.026093, 0]
    assert np.max(np.abs(entmax_bisect([1.5, 1, 0.2, -2], 1.5) - e2)) < 1e-12
    assert rounded(entmax_bisect([1.5, 1, 0.2, -2], 2.0)) == [0.75, 0.25, 0, 0]
    near_softmax = np.max(np.abs(entmax_bisect([1.0, 2, 3], 1.001) - p))
    assert near_softmax < 1e-3
    report(26, f"entmax-1.5 {rounded(e1)}, {rounded(e2)}; alpha = 2 bisection is sparsemax; "
               f"alpha = 1.001 is {near_softmax:.2g} from softmax")
    t1, t2 = taylor2([1.0, 2, 3]), taylor2([-5.0, 0, 5])
    xs = np.linspace(-10, 10, 200001)
    f4 = 1 + xs + xs ** 2 / 2 + xs ** 3 / 6 + xs ** 4 / 24
    assert rounded(t1) == [0.15625, 0.3125, 0.53125]
    assert rounded(t2) == [0.303571, 0.035714, 0.660714] and round(f4.min(), 5) == 0.27039
    report(27, f"Taylor-2 {rounded(t1)}, {rounded(t2)}; min f_4 {f4.min():.5f}")
    top2 = np.array([0, *softmax(np.array([2.0, 3]))])
    assert rounded(top2) == [0, 0.268941, 0.731059]
    report(28, f"top-2 sparse softmax {rounded(top2)}")
    x = np.array([1.5, 1, 0.2, -2])
    for fn in (softmax, lambda v: sparsemax(v)[0], entmax15):
        assert np.max(np.abs(fn(x + 3.7) - fn(x))) < 1e-12
    assert np.max(np.abs(taylor2(x + 3.7) - taylor2(x))) > 1e-2
    assert t2[0] > t2[1]                                   # -5 outranks 0: Taylor-2 is not monotone
    report(29, "shift invariance: softmax, sparsemax, entmax yes; Taylor-2 neither invariant "
               "nor monotone")
    rng = np.random.default_rng(30)
    g = -np.log(-np.log(rng.random((100000, 3))))
    freq = np.bincount(np.argmax(np.array([1.0, 2, 3]) + g, axis=1), minlength=3) / 100000
    assert np.max(np.abs(freq - p)) < 0.01
    report(30, f"Gumbel-max frequencies {rounded(freq, 4)} (softmax {rounded(p, 4)})")


def smallest_integer_rope_base(d, L, start=2, block=512, chunk=256):
    """The smallest integer base b >= start with f_b(m) = sum_i cos(m b^(-2i/d)) >= 0 for every
    m < L, by brute force over every integer: blocks of bases, m in chunks from the top of the
    range down (bases below the bound fail near L), a base dropped at its first negative."""
    i = np.arange(d // 2)
    lo = start
    while True:
        bases = np.arange(lo, lo + block, dtype=np.float64)
        alive = np.ones(block, dtype=bool)
        th = bases[:, None] ** (-2 * i[None, :] / d)                              # [block, d/2]
        for top in range(L, 0, -chunk):
            ms = np.arange(max(0, top - chunk), top, dtype=np.float64)
            idx = np.nonzero(alive)[0]
            if idx.size == 0:
                break
            f = np.cos(ms[None, :, None] * th[idx, None, :]).sum(axis=2)          # [alive, chunk]
            alive[idx[f.min(axis=1) < 0]] = False
        ok = np.nonzero(alive)[0]
        if ok.size:
            return int(bases[ok[0]])
        lo += block


def oracle_31():
    got = {(d, L): smallest_integer_rope_base(d, L)
           for d, L in ((128, 2048), (128, 4096), (64, 1024), (64, 2048), (64, 4096))}
    want = {(128, 2048): 11588, (128, 4096): 26953, (64, 1024): 7753, (64, 2048): 29618,
            (64, 4096): 100071}
    assert got == want, got
    report(31, "smallest integer RoPE base b*(L): " +
           ", ".join(f"d = {d}, L = {L}: {b}" for (d, L), b in got.items()))


def main():
    torch.set_num_threads(1)
    oracle_1_to_3()
    oracle_4()
    oracle_5()
    oracle_6()
    oracle_7()
    oracle_8()
    oracle_9_10()
    oracle_11_12()
    oracle_13()
    oracle_14()
    oracle_15()
    oracle_16()
    oracle_17_to_19()
    oracle_20()
    oracle_21()
    oracle_22_23()
    oracle_24_to_30()
    oracle_31()
    print("docs/math.md §7: every oracle reproduced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
