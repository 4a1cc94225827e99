#!/usr/bin/python3
"""Independent float64 reference of a preference step on a model.

  preference_model_reference.py --model DIR --adapter ADAPTER_DIR \
      --batch batch.json --loss dpo|ipo|orpo [--beta B] \
      [--label-smoothing E] [--orpo-lambda L] --out out.json

batch.json: {"rows": [...]} as reference_forward.py takes them, in pairs:
row 2i is pair i's prompt with the chosen answer, row 2i+1 the same prompt
with the rejected one, labels (-100 elsewhere) on the answer's tokens.

The policy is the model with the PEFT adapter folded into its weights
(reference_forward.apply_adapter, with autograd leaves on the LoRA tensors);
the reference is the model without it. Per row: the sum over the labelled
tokens of log softmax(logits)[label], and the count. Then, per pair, from the
papers (Rafailov et al. 2023, Azar et al. 2023, Hong et al. 2024):
  DPO   h = (pc - rc) - (pr - rr);
        loss = -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h)
  IPO   h on per-token averages; loss = (h - 1 / (2 beta))^2
  ORPO  a = average log p per token; log odds(a) = a - log(1 - exp(a));
        loss = -ac - lambda log sigmoid(log odds(ac) - log odds(ar))
mean over the pairs, and its gradient with respect to every LoRA tensor.

out.json: {"loss", "grads": {name: nested lists}, "logps": [per row],
"ref_logps": [per row], "rewards_chosen", "rewards_rejected",
"reward_accuracy", "reward_margin", "logps_chosen", "logps_rejected",
"loss_without_reference", "loss_swapped"} (the last two: the same loss with
the reference's log-probabilities set to 0, and with chosen and rejected
exchanged; a test checks they differ, so it can tell those mistakes apart).
"""
import argparse
import json
import os

import torch

import reference_forward as rf


def row_logps(cfg, w, rows, ctx):
    out, counts = [], []
    for r in rows:
        logits = rf.forward_example(cfg, w, r["input_ids"], r["position_ids"], ctx)
        lp = torch.log_softmax(logits, dim=-1)
        total = torch.zeros((), dtype=rf.D)
        n = 0
        for t, lab in enumerate(r["labels"]):
            if lab != -100:
                total = total + lp[t, lab]
                n += 1
        out.append(total)
        counts.append(float(n))
    return torch.stack(out), torch.tensor(counts, dtype=rf.D)


def objective(kind, pc, pr, rc, rr, nc, nr, beta, eps, lam):
    if kind == "dpo":
        h = (pc - rc) - (pr - rr)
        loss = -(1 - eps) * torch.nn.functional.logsigmoid(beta * h) \
            - eps * torch.nn.functional.logsigmoid(-beta * h)
        rew_c, rew_r = beta * (pc - rc), beta * (pr - rr)
    elif kind == "ipo":
        hc, hr = (pc - rc) / nc, (pr - rr) / nr
        loss = ((hc - hr) - 1 / (2 * beta)) ** 2
        rew_c, rew_r = beta * hc, beta * hr
    else:
        ac, ar = pc / nc, pr / nr
        log_odds = (ac - torch.log(-torch.expm1(ac))) - (ar - torch.log(-torch.expm1(ar)))
        loss = -ac - lam * torch.nn.functional.logsigmoid(log_odds)
        rew_c, rew_r = lam * ac, lam * ar
    return loss.mean(), rew_c.detach(), rew_r.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--loss", required=True, choices=["dpo", "ipo", "orpo"])
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--orpo-lambda", type=float, default=0.1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    rows = json.load(open(a.batch))["rows"]
    ctx = {"max_pos": max(max(r["position_ids"]) for r in rows)}
    with torch.no_grad():
        ref, _ = row_logps(cfg, rf.load_weights(a.model), rows, ctx)
    w = rf.load_weights(a.model)
    leaves = rf.apply_adapter(w, a.adapter, True)
    pol, counts = row_logps(cfg, w, rows, ctx)
    pc, pr, rc, rr = pol[0::2], pol[1::2], ref[0::2], ref[1::2]
    nc, nr = counts[0::2], counts[1::2]
    args = (a.beta, a.label_smoothing, a.orpo_lambda)
    loss, rew_c, rew_r = objective(a.loss, pc, pr, rc, rr, nc, nr, *args)
    loss.backward()
    with torch.no_grad():
        zero = torch.zeros_like(rc)
        no_ref, _, _ = objective(a.loss, pc, pr, zero, zero, nc, nr, *args)
        swapped, _, _ = objective(a.loss, pr, pc, rr, rc, nr, nc, *args)
    json.dump({
        "loss": float(loss),
        "grads": {k: t.grad.tolist() for k, t in leaves.items()},
        "logps": pol.detach().tolist(),
        "ref_logps": ref.tolist(),
        "rewards_chosen": float(rew_c.mean()),
        "rewards_rejected": float(rew_r.mean()),
        "reward_accuracy": float((rew_c > rew_r).to(rf.D).mean()),
        "reward_margin": float((rew_c - rew_r).mean()),
        "logps_chosen": float(pc.detach().mean()),
        "logps_rejected": float(pr.detach().mean()),
        "loss_without_reference": float(no_ref),
        "loss_swapped": float(swapped),
    }, open(a.out, "w"))


if __name__ == "__main__":
    main()
