"""How often screening keeps a whole-set query's top, and at what cost, on the tests' synthetic grids.

Usage:
    python bench/teacher_screening.py [--seeds 20] [--n 2000] [--top 40]

For each seed and noise level, builds the grid of tests/teacher/test_screening.py (per-item
effects, 10 strong items whose columns spread 1.5x their effect), screens it with the defaults
of fastattr.teacher.method.screened_scores and compares with the full computation. Prints one
JSON object: per noise level, the grids whose top matched, the mean cost (fraction of the grid's
losses computed) and, for each miss, the full-computation ranks of the missed items.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from teacher.test_screening import _grid  # noqa: E402  - the grids the tests hold

from fastattr.teacher.method import screened_scores  # noqa: E402
from fastattr.teacher.scoring import scores_from_losses  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--timesteps", type=int, default=16)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    report = {}
    for noise in (1.5e-4, 3e-4):
        costs, misses = [], {}
        for seed in range(args.seeds):
            after, base = _grid(args.n, args.timesteps, seed, noise)
            computed = [0]

            def after_losses(sel: np.ndarray, cols: np.ndarray) -> torch.Tensor:
                computed[0] += len(sel) * len(cols)
                return torch.from_numpy(after[np.ix_(sel, cols)])

            tau, _ = screened_scores(after_losses, base, exact_top=args.top)
            full = scores_from_losses(torch.from_numpy(after), torch.from_numpy(base)).numpy()
            full_order = np.argsort(-full, kind="stable")
            missed = set(full_order[: args.top].tolist()) - set(np.argsort(-tau, kind="stable")[: args.top].tolist())
            if missed:
                rank = {int(i): r for r, i in enumerate(full_order[: args.top])}
                misses[seed] = sorted(rank[i] for i in missed)
            costs.append(computed[0] / after.size)
        report[str(noise)] = {"grids": args.seeds, "top_matched": args.seeds - len(misses),
                              "mean_cost": round(float(np.mean(costs)), 3), "missed_ranks": misses}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
