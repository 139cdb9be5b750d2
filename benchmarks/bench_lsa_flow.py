"""Benchmark: time for the LSA gradient flow to reach relative error 1e-10 to G* = Gamma^{-1}.

Compares, at d = 25, 50, 100 (N = 2d, ZFB linear data, Lambda with spectrum linspace(0.5, 2)
rotated by a random orthogonal matrix, structured init with s^2 ||Gamma||_op sqrt(d) = 1):

- ``eigen/LSODA``: iclkit's ``simulate(EigenLSAFlow, ...)`` (reduced ODE in Lambda's eigenbasis,
  d + 2 states, analytic Jacobian);
- ``reduced/RK45``: ``simulate(ReducedLSAFlow, ..., method="RK45")`` (matrix form, d^2 + 1
  states, hand-written matrix-product gradient);
- ``full/RK45``: ``scipy.integrate.solve_ivp(method="RK45")`` on the flattened (W^KQ, W^PV)
  system (2 (d+1)^2 states) with the autograd gradient of the closed-form loss.

Every run stops at the first step where ||G(t) - G*||_F / ||G*||_F <= 1e-10, with G* from
numpy's inverse of Gamma (independent of the ODE code), so all reach the same error.
Run: ``/work/venv/bin/python benchmarks/bench_lsa_flow.py [--skip-full-above D]``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy.integrate import solve_ivp

from iclkit.dynamics.lsa.flow import EigenLSAFlow, FullLSAFlow, ReducedLSAFlow
from iclkit.dynamics.lsa.init import structured_init
from iclkit.dynamics.lsa.integrate import simulate
from iclkit.dynamics.lsa.moments import LSAMoments

TARGET = 1e-10
RTOL, ATOL = 1e-11, 1e-13


def problem(d: int) -> tuple[LSAMoments, np.ndarray, object]:
    g = torch.Generator().manual_seed(d)
    Q, _ = np.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64).numpy())
    lam = Q @ np.diag(np.linspace(0.5, 2.0, d)) @ Q.T
    lam = 0.5 * (lam + lam.T)
    N = 2 * d
    m = LSAMoments.linear(d, N, Lambda=lam)
    gamma = (1 + 1 / N) * lam + np.trace(lam) / N * np.eye(d)
    G_star = np.linalg.inv(gamma)
    scale = 1.0 / math.sqrt(np.linalg.eigvalsh(gamma).max() * math.sqrt(d))
    return m, G_star, structured_init(m, scale, seed=0)


def run_iclkit(flow_name: str, d: int) -> dict[str, float]:
    m, G_star, init = problem(d)
    nrm = np.linalg.norm(G_star)
    if flow_name == "eigen":
        flow = EigenLSAFlow(m).bound(init)
        _, V = m.eigenbasis
        Gs_e = V.T @ G_star @ V  # orthogonal change of basis keeps the Frobenius norm

        def stop(t: float, y: np.ndarray) -> bool:
            return bool(np.linalg.norm(y[0] * flow.U_eigen(y) - Gs_e) <= TARGET * nrm)
    else:
        flow = ReducedLSAFlow(m)

        def stop(t: float, y: np.ndarray) -> bool:
            return bool(np.linalg.norm(y[-1] * y[:-1].reshape(d, d) - G_star) <= TARGET * nrm)

    t0 = time.perf_counter()
    method = "LSODA" if flow_name == "eigen" else "RK45"
    sim = simulate(
        flow,
        init,
        (0, 1e5),
        method=method,
        rtol=RTOL,
        atol=ATOL,
        gradient_tol=None,
        stop_when=stop,
        record="ends",
    )
    wall = time.perf_counter() - t0
    err = np.linalg.norm(sim.G_final - G_star) / nrm
    return {
        "time": wall,
        "err": err,
        "t": sim.t_final,
        "nfev": sim.stats.function_evaluations,
        "steps": sim.stats.steps,
        "status": sim.status.value,
    }


def run_full_rk45(d: int) -> dict[str, float]:
    m, G_star, init = problem(d)
    flow = FullLSAFlow(m)
    y0 = flow.initial_state(init)
    nrm = np.linalg.norm(G_star)

    def event(t: float, y: np.ndarray) -> float:
        return float(np.linalg.norm(flow.G(y) - G_star) / nrm - TARGET)

    event.terminal = True  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    sol = solve_ivp(
        flow.rhs, (0, 1e5), y0, method="RK45", rtol=RTOL, atol=ATOL, events=event, t_eval=[0.0]
    )
    wall = time.perf_counter() - t0
    yT = sol.y_events[0][0] if sol.status == 1 else sol.y[:, -1]
    err = np.linalg.norm(flow.G(yT) - G_star) / nrm
    tT = sol.t_events[0][0] if sol.status == 1 else float("nan")
    return {
        "time": wall,
        "err": err,
        "t": tT,
        "nfev": sol.nfev,
        "steps": float("nan"),
        "status": "stopped" if sol.status == 1 else sol.message,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="25,50,100")
    ap.add_argument("--skip-full-above", type=int, default=100)
    args = ap.parse_args()
    dims = [int(v) for v in args.dims.split(",")]
    torch.set_num_threads(1)
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for d in dims:
        rows[("eigen/LSODA", d)] = run_iclkit("eigen", d)
        rows[("reduced/RK45", d)] = run_iclkit("reduced", d)
        if d <= args.skip_full_above:
            rows[("full/RK45", d)] = run_full_rk45(d)
        for (name, dd), r in rows.items():
            if dd == d:
                print(
                    f"d={d:4d} {name:14s} wall={r['time']:9.3f}s  rel.err={r['err']:.2e}  "
                    f"t={r['t']:.2f}  nfev={r['nfev']}  steps={r['steps']}  {r['status']}",
                    flush=True,
                )
        if ("full/RK45", d) in rows:
            ratio = rows[("full/RK45", d)]["time"] / rows[("eigen/LSODA", d)]["time"]
            print(f"d={d:4d} speed-up eigen/LSODA vs full/RK45: {ratio:.1f}x", flush=True)
    for name in ("eigen/LSODA", "reduced/RK45", "full/RK45"):
        pts = [(d, rows[(name, d)]["time"]) for d in dims if (name, d) in rows]
        if len(pts) >= 2:
            (d0, t0), (d1, t1) = pts[0], pts[-1]
            print(
                f"{name:14s} cost growth: time ~ d^{math.log(t1 / t0) / math.log(d1 / d0):.2f} "
                f"(d = {d0} -> {d1})"
            )


if __name__ == "__main__":
    main()
