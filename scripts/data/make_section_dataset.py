#!/usr/bin/python3
"""Build the demo's classification task from Debian's package index.

Each example gives a package's name, one-line summary and first
dependencies, and answers with its archive section in a fixed JSON format,
the shape of task that fine-tuning is for (a label in a house format):

  {"prompt": "Package: python3-requests\\nSummary: elegant and simple HTTP
   library for Python3, built for human beings\\nDepends: python3-certifi,
   python3-charset-normalizer, python3-idna, python3-urllib3\\nSection as
   JSON:\\n", "completion": "{\\"section\\": \\"python\\"}"}

The base model has never seen this format, so at step 0 none of its
completions match it; the held-out share that does (task metrics'
pattern_match with PATTERN below) and the share with the right section
(exact_match) say what the job taught it.

Source: `apt-cache dumpavail` (every Debian machine has it after
`apt-get update`): Package, Section, Description (the summary), Depends
(package names only, without versions or alternatives, the first
--max-depends). The sections are --only (default: the eight language
ecosystems below, which a package's name, summary and dependencies
mostly tell apart) or else the --sections largest sections of main
(contrib/ and non-free/ prefixes dropped), and only packages of the "finetune" pool
(debian_text.bucket in 7..9), so the demo base model never saw their text
in pretraining. Each section contributes the same number of examples;
packages are ordered by sha256(seed + name), the first --eval-per-section
of each section go to the held-out file and the next --train-per-section
to the training file: the split is by package and the two files never
share one. Summaries with the same text are kept once.

Writes OUT/train.jsonl, OUT/eval.jsonl (ordered by hash, not by section)
and OUT/dataset_info.json (counts per section, sha256 of each file, the
pattern, the settings).
"""

import argparse
import collections
import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debian_text  # noqa: E402
from make_dataset import write_jsonl  # noqa: E402

PROMPT = "Package: {name}\nSummary: {summary}\nDepends: {depends}\nSection as JSON:\n"
ECOSYSTEMS = ("golang", "haskell", "javascript", "perl", "python", "ruby", "rust", "gnu-r")
COMPLETION = '{{"section": "{section}"}}'
# RE2 (task_metrics.eval_pattern): the whole completion is the format.
PATTERN = r'^\{"section": "[a-z0-9-]+"\}$'


def dependency_names(depends, limit):
    """'a (>= 1), b | c, d:any' -> 'a, b, d' (first alternative, no
    versions or architecture qualifiers), at most limit names; 'none'."""
    names = []
    for alt in depends.split(","):
        name = alt.split("|")[0].split("(")[0].split("[")[0].strip().split(":")[0]
        if name and name not in names:
            names.append(name)
    return ", ".join(names[:limit]) if names else "none"


def read_index(text, max_depends=4):
    """Package -> (section, summary, depends) from apt-cache dumpavail's records."""
    out = {}
    for record in text.split("\n\n"):
        fields = {}
        for line in record.split("\n"):
            if not line or line[0] in " \t" or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        name, section, summary = (fields.get(k, "") for k in ("Package", "Section", "Description"))
        if not name or not section or not summary or name in out:
            continue
        if "/" in section:  # contrib/net, non-free/libs: the section proper
            section = section.split("/", 1)[1]
        out[name] = (section, summary, dependency_names(fields.get("Depends", ""), max_depends))
    return out


def select(index, n_sections, n_train, n_eval, max_chars, seed, only=None):
    pool = {n: v for n, v in index.items() if debian_text.bucket(n) in debian_text.FINETUNE_BUCKETS}
    sizes = collections.Counter(v[0] for v in pool.values())
    sections = sorted(only) if only else sorted(s for s, _ in sizes.most_common(n_sections))
    key = lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()  # noqa: E731
    by_section = collections.defaultdict(list)
    seen = set()
    for name in sorted(pool, key=key):
        section, summary, depends = pool[name]
        if section not in sections or len(summary) > max_chars or summary in seen:
            continue
        seen.add(summary)
        by_section[section].append((name, section, summary, depends))
    held, train = [], []
    for s in sections:
        got = by_section[s]
        if len(got) < n_train + n_eval:
            raise SystemExit(f"section {s}: only {len(got)} usable packages, asked for {n_train} + {n_eval}")
        held += got[:n_eval]
        train += got[n_eval:n_eval + n_train]
    # Interleave the sections (hash order), as a shuffled file would be.
    held.sort(key=lambda r: key(r[0]))
    train.sort(key=lambda r: key(r[0]))
    return sections, held, train


def example(name, section, summary, depends):
    return {"prompt": PROMPT.format(name=name, summary=summary, depends=depends),
            "completion": COMPLETION.format(section=section)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--only", default=",".join(ECOSYSTEMS),
                    help="comma-separated sections; empty: the --sections largest")
    ap.add_argument("--sections", type=int, default=12, help="without --only: the N largest sections of the pool")
    ap.add_argument("--max-depends", type=int, default=4, help="dependency names kept in the prompt")
    ap.add_argument("--train-per-section", type=int, default=80)
    ap.add_argument("--eval-per-section", type=int, default=6)
    ap.add_argument("--max-chars", type=int, default=100, help="longest summary kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", help="a file with apt-cache dumpavail's output (default: run it)")
    a = ap.parse_args()
    if a.sections < 2 or a.train_per_section < 1 or a.eval_per_section < 1:
        ap.error("--sections must be >= 2, --train/eval-per-section >= 1")
    if a.index:
        with open(a.index, encoding="utf-8", errors="replace") as f:
            text = f.read()
    else:
        text = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True,
                              text=True, errors="replace").stdout
    index = read_index(text, a.max_depends)
    if not index:
        raise SystemExit("make_section_dataset: apt-cache dumpavail printed no packages; run apt-get update")
    only = [x for x in a.only.split(",") if x]
    sections, held, train = select(index, a.sections, a.train_per_section, a.eval_per_section,
                                   a.max_chars, a.seed, only)
    os.makedirs(a.out, exist_ok=True)
    info = {"task": "section of a Debian package from its name, summary and dependencies, as JSON",
            "prompt_template": PROMPT, "completion_template": COMPLETION, "eval_pattern": PATTERN,
            "sections": sections, "settings": vars(a),
            "source": "apt-cache dumpavail (Debian bookworm main), finetune pool sha256(name)[0]%10 in 7..9"}
    info["train"] = {"examples": len(train),
                     "sha256": write_jsonl(os.path.join(a.out, "train.jsonl"), [example(*r) for r in train])}
    info["eval"] = {"examples": len(held),
                    "sha256": write_jsonl(os.path.join(a.out, "eval.jsonl"), [example(*r) for r in held])}
    with open(os.path.join(a.out, "dataset_info.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(json.dumps({"sections": sections, "train": info["train"], "eval": info["eval"]}))


if __name__ == "__main__":
    main()
