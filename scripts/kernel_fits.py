#!/usr/bin/env python3
"""The fits behind two AVX-512 kernels of src/kernels/vmath_avx512.h, made again from scratch.

gelu: erf(x / sqrt 2) ~ x P(x^2) / Q(x^2) on [0, 4 sqrt 2], P and Q of degree 5, Q(0) = 1
  (v4r_gelu16). Linearized least squares (P - f Q, weighted by 1/Q of the previous round).
exp: e^r ~ a degree-5 polynomial on [-ln 2 / 2, ln 2 / 2], relative error (v4r_exp16_nonpos).
Both reweight each round toward the largest errors (Lawson), on Chebyshev points, and print the
coefficients as float32 (lowest degree first), the error in exact arithmetic and the error of a
float32 evaluation in the kernel's order.
Needs numpy (the reference environment: scripts/pyenv.sh).
Usage: scripts/kernel_fits.py gelu|exp [ROUNDS]
"""
import sys
from math import erf, sqrt

import numpy as np

LIMIT = 4 * sqrt(2)  # erf(x / sqrt 2) is 1 to float precision beyond
DEG = 5
verf = np.vectorize(erf)


def fit_gelu(rounds):
    x = np.cos(np.linspace(0, np.pi, 6000)) * LIMIT / 2 + LIMIT / 2
    x = x[x > 1e-6]
    w, f = x * x, verf(x / sqrt(2)) / x
    weight, q_prev = x.copy(), np.ones_like(x)
    for _ in range(rounds):
        vp = np.vander(w, DEG + 1, increasing=True)
        a = np.hstack([vp, -f[:, None] * vp[:, 1:]]) * (weight / q_prev)[:, None]
        c, *_ = np.linalg.lstsq(a, f * weight / q_prev, rcond=None)
        p, q = c[: DEG + 1], np.concatenate([[1.0], c[DEG + 1:]])
        q_prev = np.polyval(q[::-1], w)
        err = np.abs(x * np.polyval(p[::-1], w) / q_prev - verf(x / sqrt(2)))
        weight = weight * np.sqrt(err / err.max() + 1e-3)
        weight /= weight.max()
    return p, q


def gelu_f32(p, q, x):
    """The kernel's steps in float32, each FMA rounded once (1/Q exact: the Newton step's error
    is far below float's)."""
    f32, f64 = np.float32, np.float64
    xc = np.clip(x, f32(-LIMIT), f32(LIMIT)).astype(f32)
    w = (xc * xc).astype(f32)
    pp, qq = np.full_like(w, f32(p[-1])), np.full_like(w, f32(q[-1]))
    for cp, cq in zip(p[-2::-1], q[-2::-1]):
        pp = (pp.astype(f64) * w + f32(cp)).astype(f32)
        qq = (qq.astype(f64) * w + f32(cq)).astype(f32)
    e = ((xc * pp).astype(f32) * (1.0 / qq.astype(f64)).astype(f32)).astype(f32)
    half = (x * f32(0.5)).astype(f32)
    y = (half.astype(f64) * e + half).astype(f32)
    return np.where(x > f32(-LIMIT), y, f32(0))


def fit_exp(rounds):
    half = np.log(2) / 2
    r = np.cos(np.linspace(0, np.pi, 4000)) * half
    weight = np.ones_like(r)
    for _ in range(rounds):
        a = np.vander(r, DEG + 1, increasing=True) * (np.exp(-r) * weight)[:, None]
        c, *_ = np.linalg.lstsq(a, weight, rcond=None)
        err = np.abs(np.polyval(c[::-1], r) * np.exp(-r) - 1)
        weight = weight * np.sqrt(err / err.max() + 1e-3)
        weight /= weight.max()
    return c, err.max()


def main_exp(rounds):
    c, exact = fit_exp(rounds)
    print("p:", ", ".join(f"{float(np.float32(v)):.9e}" for v in c))
    print(f"relative error, exact arithmetic: {exact:.2g}")
    r = np.linspace(-np.log(2) / 2, np.log(2) / 2, 200001).astype(np.float32)
    p = np.full_like(r, np.float32(c[-1]))
    for v in c[-2::-1]:
        p = (p.astype(np.float64) * r + np.float32(v)).astype(np.float32)
    print(f"in float32: relative error {np.abs(p / np.exp(r.astype(np.float64)) - 1).max():.2g}")


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("gelu", "exp"):
        sys.exit("usage: scripts/kernel_fits.py gelu|exp [ROUNDS]")
    if sys.argv[1] == "exp":
        main_exp(int(sys.argv[2]) if len(sys.argv) > 2 else 60)
        return
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 160
    p, q = fit_gelu(rounds)
    print("P:", ", ".join(f"{float(np.float32(c)):.9e}" for c in p))
    print("Q:", ", ".join(f"{float(np.float32(c)):.9e}" for c in q))
    t = np.linspace(1e-4, LIMIT, 200001)
    exact = np.abs(t * np.polyval(p[::-1], t * t) / np.polyval(q[::-1], t * t) - verf(t / sqrt(2))).max()
    print(f"erf error, exact arithmetic: {exact:.2g}")
    x = np.linspace(-10, 10, 2000001).astype(np.float32)
    ref = 0.5 * x.astype(np.float64) * (1 + verf(x.astype(np.float64) / sqrt(2)))
    worst = (np.abs(gelu_f32(p, q, x) - ref) / (1 + np.abs(x))).max()
    print(f"GELU in float32: worst |error| / (1 + |x|) {worst:.2g}")


if __name__ == "__main__":
    main()
