#!/usr/bin/python3
"""Independent float64 reference of full-parameter fine-tuning (method "full").

  full_finetune_reference.py --job job.json

job.json: {"model": DIR, "rows": [PackedSequence rows as in
reference_forward.py], "steps": N, "lr": [lr of step 1..N], "weight_decay":
wd, "max_grad_norm": c, "out": PATH}. Every step trains on all rows (the
mean cross-entropy over all their targets, each packed example run on its
own by reference_forward.forward_example): the gradient of every weight of
the model (a tied embedding is one tensor, as the model file has it), then
torch.nn.utils.clip_grad_norm_(c) and torch.optim.AdamW (betas 0.9/0.999,
eps 1e-8, weight_decay wd), all in float64. Writes PATH (JSON): {"losses":
[loss before each step's update]} and PATH.safetensors: the weights after
the last step, by their HF names, float64.

Uses PyTorch's own optimizer and clipping, not the trainer's code.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_forward as rf  # noqa: E402
import st_io  # noqa: E402


def loss_of(cfg, w, rows):
    ctx = {"max_pos": max(max(r["position_ids"]) for r in rows)}
    total, count = 0.0, 0
    for r in rows:
        n = len(r["input_ids"])
        pieces, start = [], 0
        while start < n:
            end = start
            while end < n and r["segment_ids"][end] == r["segment_ids"][start]:
                end += 1
            pieces.append(rf.forward_example(
                cfg, w, r["input_ids"][start:end], r["position_ids"][start:end], ctx))
            start = end
        logits = torch.cat(pieces)
        for t, lab in enumerate(r["labels"]):
            if lab != -100:
                total = total + (torch.logsumexp(logits[t], 0) - logits[t, lab])
                count += 1
    return total / max(count, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", required=True)
    job = json.load(open(ap.parse_args().job))
    cfg = json.load(open(os.path.join(job["model"], "config.json")))
    w = {k: v.clone().requires_grad_(True)
         for k, v in rf.load_weights(job["model"]).items()}
    params = [w[k] for k in sorted(w)]
    opt = torch.optim.AdamW(params, lr=job["lr"][0], betas=(0.9, 0.999),
                            eps=1e-8, weight_decay=job["weight_decay"])
    losses = []
    for step in range(job["steps"]):
        for g in opt.param_groups:
            g["lr"] = job["lr"][step]
        opt.zero_grad()
        loss = loss_of(cfg, w, job["rows"])
        loss.backward()
        losses.append(float(loss))
        if job["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, job["max_grad_norm"])
        opt.step()
    json.dump({"losses": losses}, open(job["out"], "w"))
    st_io.save(job["out"] + ".safetensors",
               {k: v.detach() for k, v in w.items()})


if __name__ == "__main__":
    main()
