#!/usr/bin/python3
"""Independent float64 reference of the preference losses (DPO, IPO, ORPO).

  preference_reference.py IN.json OUT.json

IN: {"loss": "dpo"|"ipo"|"orpo", "beta": b, "label_smoothing": e,
     "orpo_lambda": l, "pairs": [{"pc", "pr", "rc", "rr", "nc", "nr"}]}
    pc/pr: policy log p of the chosen/rejected completion (sum over its
    tokens), rc/rr: the reference's, nc/nr: completion token counts.
OUT: {"loss": L, "grad_pc": [dL/dpc], "grad_pr": [dL/dpr],
      "rewards_chosen", "rewards_rejected", "reward_accuracy",
      "reward_margin"}

Written from the papers' formulas (Rafailov et al. 2023, Azar et al. 2023,
Hong et al. 2024), one pair at a time with Python floats for the loss and
the derivatives worked out by hand, not from the C++ code.
"""
import json
import math
import sys


def log_sigmoid(x):
    # log(1 / (1 + exp(-x))), stable both ways.
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def log1m_exp(a):
    return math.log(-math.expm1(a)) if a > -math.log(2) else math.log1p(-math.exp(a))


def main():
    spec = json.load(open(sys.argv[1]))
    kind, beta = spec["loss"], spec["beta"]
    eps, lam = spec.get("label_smoothing", 0.0), spec.get("orpo_lambda", 0.1)
    pairs = spec["pairs"]
    n = len(pairs)
    loss, gpc, gpr, rc_all, rr_all = 0.0, [], [], [], []
    for p in pairs:
        if kind == "dpo":
            h = (p["pc"] - p["rc"]) - (p["pr"] - p["rr"])
            z = beta * h
            loss += -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z)
            # d/dz: -(1-e)(1 - s(z)) + e s(z)
            dz = -(1 - eps) * (1 - sigmoid(z)) + eps * sigmoid(z)
            gpc.append(dz * beta / n)
            gpr.append(-dz * beta / n)
            rc_all.append(beta * (p["pc"] - p["rc"]))
            rr_all.append(beta * (p["pr"] - p["rr"]))
        elif kind == "ipo":
            c = (p["pc"] - p["rc"]) / p["nc"]
            r = (p["pr"] - p["rr"]) / p["nr"]
            d = (c - r) - 1.0 / (2 * beta)
            loss += d * d
            gpc.append(2 * d / p["nc"] / n)
            gpr.append(-2 * d / p["nr"] / n)
            rc_all.append(beta * c)
            rr_all.append(beta * r)
        elif kind == "orpo":
            ac, ar = p["pc"] / p["nc"], p["pr"] / p["nr"]
            log_odds = (ac - log1m_exp(ac)) - (ar - log1m_exp(ar))
            loss += -ac - lam * log_sigmoid(log_odds)
            # d log_odds / d a = 1 + exp(a) / (1 - exp(a)) = 1 / (1 - exp(a))
            dlo = -lam * (1 - sigmoid(log_odds))
            gpc.append((-1 + dlo / (1 - math.exp(ac))) / p["nc"] / n)
            gpr.append((-dlo / (1 - math.exp(ar))) / p["nr"] / n)
            rc_all.append(lam * ac)
            rr_all.append(lam * ar)
        else:
            raise SystemExit("unknown loss " + kind)
    out = {
        "loss": loss / n,
        "grad_pc": gpc,
        "grad_pr": gpr,
        "rewards_chosen": sum(rc_all) / n,
        "rewards_rejected": sum(rr_all) / n,
        "reward_accuracy": sum(1.0 for a, b in zip(rc_all, rr_all) if a > b) / n,
        "reward_margin": (sum(rc_all) - sum(rr_all)) / n,
    }
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
