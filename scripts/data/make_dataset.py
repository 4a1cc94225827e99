#!/usr/bin/python3
"""Build an instruction data set from the Debian package descriptions.

Each example asks for a package's description and answers with the real one
from apt's Translation-en index:

  prompt   {"prompt": "Describe the Debian package NAME.", "completion": " <description>"}
  chat     {"messages": [{"role": "user", "content": "Describe the Debian package NAME."},
                         {"role": "assistant", "content": "<description>"}]}
  text     {"text": "Package: NAME\\nDescription: <description>"}

Examples come only from the "finetune" pool of packages (see debian_text.py),
which the substitute base model never saw during pretraining. Descriptions
shorter than --min-chars or longer than --max-chars are skipped; identical
descriptions (e.g. foo and foo-dbg sharing text) are kept once. Selection is
deterministic: packages are ordered by sha256(seed + name); the first --eval
go to the held-out file, the next --train to the training file, so the two
never share a package or a description.

Writes OUT/train.jsonl and OUT/eval.jsonl (one JSON object per line, UTF-8)
and OUT/dataset_info.json (counts, sha256 of each file, settings).
"""

import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debian_text  # noqa: E402

PROMPT = "Describe the Debian package {name}."


def example(fmt, name, desc):
    q = PROMPT.format(name=name)
    if fmt == "prompt":
        return {"prompt": q, "completion": " " + desc}
    if fmt == "chat":
        return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": desc}]}
    if fmt == "text":
        return {"text": f"Package: {name}\nDescription: {desc}"}
    raise ValueError(f"unknown format {fmt!r}")


def select(descs, n_train, n_eval, min_chars, max_chars, seed):
    names = [n for n in descs if debian_text.bucket(n) in debian_text.FINETUNE_BUCKETS]
    names.sort(key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())
    seen, picked, skipped = set(), [], {"too_short": 0, "too_long": 0, "duplicate": 0}
    for n in names:
        if len(picked) == n_train + n_eval:
            break
        d = debian_text.full_description(*descs[n])
        if len(d) < min_chars:
            skipped["too_short"] += 1
            continue
        if len(d) > max_chars:
            skipped["too_long"] += 1
            continue
        if d in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(d)
        picked.append((n, d))
    if len(picked) < n_train + n_eval:
        raise SystemExit(f"only {len(picked)} usable descriptions in the finetune pool, "
                         f"asked for {n_train} + {n_eval}")
    return picked[:n_eval], picked[n_eval:], skipped


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--format", choices=["prompt", "chat", "text"], default="prompt")
    ap.add_argument("--min-chars", type=int, default=80)
    ap.add_argument("--max-chars", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.train < 0 or a.eval < 0 or a.min_chars > a.max_chars:
        ap.error("--train/--eval must be >= 0 and --min-chars <= --max-chars")
    try:
        descs = debian_text.load_descriptions()
    except debian_text.NoTranslationsError as e:
        raise SystemExit(f"make_dataset: {e}")
    held, train, skipped = select(descs, a.train, a.eval, a.min_chars, a.max_chars, a.seed)
    os.makedirs(a.out, exist_ok=True)
    info = {"format": a.format, "prompt_template": PROMPT, "settings": vars(a), "skipped": skipped,
            "source": "apt Translation-en (Debian bookworm), finetune pool sha256(name)[0]%10 in 7..9"}
    info["train"] = {"examples": len(train),
                     "sha256": write_jsonl(os.path.join(a.out, "train.jsonl"),
                                           [example(a.format, n, d) for n, d in train])}
    info["eval"] = {"examples": len(held),
                    "sha256": write_jsonl(os.path.join(a.out, "eval.jsonl"),
                                          [example(a.format, n, d) for n, d in held])}
    with open(os.path.join(a.out, "dataset_info.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(json.dumps({"train": info["train"], "eval": info["eval"], "skipped": skipped}))


if __name__ == "__main__":
    main()
