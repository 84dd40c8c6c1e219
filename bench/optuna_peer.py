#!/usr/bin/env python3
"""Optuna peer for ChromaTune's search-sampler benchmark (bench/search.ts).

Same test functions (Branin, Hartmann-6), same seeds 0..seeds-1, same trials per study: the best
value found per study, as regret against the known minimum, summarised by median and quartiles
(numpy's linear interpolation, written out here). Samplers: those Optuna 3.1 ships that need no
extra package: RandomSampler, TPESampler (univariate, Optuna's default) and TPESampler with
multivariate=True. (CmaEsSampler needs cmaes, QMCSampler needs scipy.)

Needs only Debian's python3-optuna and the standard library:
    /usr/bin/python3 bench/optuna_peer.py --seeds 20 --trials 30 --json
"""
import argparse
import json
import math
import time
import warnings

import optuna

# ----------------------------------------------------------------------------- functions


def branin(x1, x2):
    b = 5.1 / (4 * math.pi**2)
    c = 5 / math.pi
    t = 1 / (8 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


H6_ALPHA = [1.0, 1.2, 3.0, 3.2]
H6_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
H6_P = [
    [v * 1e-4 for v in row]
    for row in [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
]


def hartmann6(x):
    return -sum(
        H6_ALPHA[i] * math.exp(-sum(H6_A[i][j] * (x[j] - H6_P[i][j]) ** 2 for j in range(6)))
        for i in range(4)
    )


FUNCTIONS = {
    "branin": {
        "optimum": 0.397887,
        "objective": lambda t: branin(t.suggest_float("x1", -5, 10), t.suggest_float("x2", 0, 15)),
    },
    "hartmann6": {
        "optimum": -3.32237,
        "objective": lambda t: hartmann6([t.suggest_float(f"x{j + 1}", 0, 1) for j in range(6)]),
    },
}

SAMPLERS = {
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "tpe_multivariate": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
}

# ----------------------------------------------------------------------------- figures


def quantile(xs, q):
    s = sorted(xs)
    h = (len(s) - 1) * q
    lo = math.floor(h)
    return s[lo] + (h - lo) * (s[lo + 1] - s[lo]) if lo + 1 < len(s) else s[lo]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--functions", default=",".join(FUNCTIONS))
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    results = {}
    for fname in args.functions.split(","):
        fn = FUNCTIONS[fname]
        results[fname] = {}
        for sname in args.samplers.split(","):
            t0 = time.perf_counter()
            regrets = []
            for seed in range(args.seeds):
                study = optuna.create_study(direction="minimize", sampler=SAMPLERS[sname](seed))
                study.optimize(fn["objective"], n_trials=args.trials)
                regrets.append(study.best_value - fn["optimum"])
            r = {
                "median": quantile(regrets, 0.5),
                "q1": quantile(regrets, 0.25),
                "q3": quantile(regrets, 0.75),
                "regrets": regrets,
                "seconds": time.perf_counter() - t0,
            }
            results[fname][sname] = r
            if not args.json:
                print(f"{fname} {sname}: median regret {r['median']:.3g} (q1 {r['q1']:.3g}, q3 {r['q3']:.3g}), {r['seconds']:.1f} s")

    out = {"optuna": optuna.__version__, "seeds": args.seeds, "trials": args.trials, "results": results}
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
