#!/usr/bin/python3
"""Build the demo's house-format task from Debian's package index.

The task is the kind users bring to fine-tuning: the answer is all in the
prompt, but it must come out in one fixed format. Each prompt is a real
apt record (Package, Version, Section, Priority, Installed-Size, Depends)
with its fields in a per-package shuffled order; the completion is one line
in a fixed order:

  {"prompt": "Record:\\nDepends: libc6 (>= 2.7), libnfc6 (>= 1.8.0-2)\\n
   Version: 1.8.0-2\\nPriority: optional\\nPackage: libnfc-examples\\n
   Section: utils\\nInstalled-Size: 184\\nOne line:\\n",
   "completion": "Section utils, priority optional, two dependencies,
   name libnfc-examples."}

The dependency count, in words, is the one rule the model must learn on top
of copying and reordering (an "a | b" entry counts once; none is "no
dependencies"). The line is made of words the base model's prose
vocabulary has (no "=" or braces): with LoRA, which leaves the output layer
as it is, this 9M base did not learn to emit rare tokens such as "=" at
all (see examples/debian-records/README.md for what was measured). The
base model has never seen the format, so at step 0 none of its completions
match it; the held-out share that does (task metrics' pattern_match with
PATTERN below) and the share that is exactly right (exact_match) say what
the job taught it.

Source: `apt-cache dumpavail` (every Debian machine has it after
`apt-get update`). Depends is kept as apt prints it (versions and
alternatives included; an "a | b" entry counts once); only packages with
at most --max-depends entries are used, so a prompt stays short. Section
keeps a contrib/ or non-free/ prefix out (the section proper). Only packages
of the "finetune" pool (debian_text.bucket in 7..9) are used, so the demo
base model never saw their text in pretraining. Packages are ordered by
sha256(seed + name); the first --eval go to the held-out file and the next
--train to the training file: the split is by package and the two files
never share one. The field order of each prompt comes from the same hash.

Writes OUT/train.jsonl, OUT/eval.jsonl and OUT/dataset_info.json (counts,
sha256 of each file, the pattern, the settings).
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debian_text  # noqa: E402
from make_dataset import write_jsonl  # noqa: E402

FIELDS = ("Package", "Version", "Section", "Priority", "Installed-Size", "Depends")
HEADER = "Record:\n"
FOOTER = "One line:\n"
COMPLETION = "Section {section}, priority {priority}, {deps}, name {name}."
# The count in words, as in "two dependencies".
COUNTS = ("no dependencies", "one dependency", "two dependencies", "three dependencies",
          "four dependencies", "five dependencies", "six dependencies")
# RE2 (task_metrics.eval_pattern): the whole completion is the format.
PATTERN = r"^Section [a-z0-9-]+, priority [a-z]+, [a-z]+ dependenc(y|ies), name [a-z0-9][a-z0-9+.-]*\.$"


def depends_count(depends):
    """Entries of a Depends field ('a (>= 1), b | c' -> 2; '' -> 0)."""
    return len([e for e in depends.split(",") if e.strip()])


def read_index(text):
    """Package -> {field: value} for FIELDS from apt-cache dumpavail's
    records; records missing Package, Version, Section or Priority are
    skipped, and the first record of a name wins."""
    out = {}
    for record in text.split("\n\n"):
        fields = {}
        for line in record.split("\n"):
            if not line or line[0] in " \t" or ":" not in line:
                continue
            key, _, value = line.partition(":")
            if key in FIELDS:
                fields[key] = value.strip()
        name = fields.get("Package", "")
        if not name or name in out or not all(fields.get(k) for k in ("Version", "Section", "Priority")):
            continue
        if "/" in fields["Section"]:  # contrib/net, non-free/libs: the section proper
            fields["Section"] = fields["Section"].split("/", 1)[1]
        out[name] = fields
    return out


def _key(seed, name):
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def select(index, n_train, n_eval, max_depends, seed):
    """(held-out, train) lists of records, split by package, hash-ordered."""
    names = [n for n, f in index.items()
             if debian_text.bucket(n) in debian_text.FINETUNE_BUCKETS
             and depends_count(f.get("Depends", "")) <= max_depends]
    names.sort(key=lambda n: _key(seed, n))
    if len(names) < n_train + n_eval:
        raise SystemExit(f"only {len(names)} usable packages, asked for {n_train} + {n_eval}")
    held = [index[n] for n in names[:n_eval]]
    train = [index[n] for n in names[n_eval:n_eval + n_train]]
    return held, train


def example(fields, seed):
    order = sorted((k for k in FIELDS if k in fields),
                   key=lambda k: _key(seed, fields["Package"] + "/" + k))
    prompt = HEADER + "".join(f"{k}: {fields[k]}\n" for k in order) + FOOTER
    completion = COMPLETION.format(name=fields["Package"], section=fields["Section"],
                                   priority=fields["Priority"],
                                   deps=COUNTS[depends_count(fields.get("Depends", ""))])
    return {"prompt": prompt, "completion": completion}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--train", type=int, default=480, help="training examples")
    ap.add_argument("--eval", type=int, default=64, help="held-out examples")
    ap.add_argument("--max-depends", type=int, default=4, help="most Depends entries of a used package")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", help="a file with apt-cache dumpavail's output (default: run it)")
    a = ap.parse_args()
    if a.train < 1 or a.eval < 1 or not 0 <= a.max_depends < len(COUNTS):
        ap.error(f"--train and --eval must be >= 1, --max-depends in 0..{len(COUNTS) - 1}")
    if a.index:
        with open(a.index, encoding="utf-8", errors="replace") as f:
            text = f.read()
    else:
        text = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True,
                              text=True, errors="replace").stdout
    index = read_index(text)
    if not index:
        raise SystemExit("make_record_dataset: apt-cache dumpavail printed no packages; run apt-get update")
    held, train = select(index, a.train, a.eval, a.max_depends, a.seed)
    os.makedirs(a.out, exist_ok=True)
    info = {"task": "an apt record (fields shuffled) rewritten as one fixed-format line",
            "prompt_fields": list(FIELDS), "prompt_header": HEADER, "prompt_footer": FOOTER,
            "completion_template": COMPLETION, "eval_pattern": PATTERN, "settings": vars(a),
            "source": "apt-cache dumpavail (Debian bookworm main), finetune pool sha256(name)[0]%10 in 7..9"}
    info["train"] = {"examples": len(train), "sha256": write_jsonl(
        os.path.join(a.out, "train.jsonl"), [example(r, a.seed) for r in train])}
    info["eval"] = {"examples": len(held), "sha256": write_jsonl(
        os.path.join(a.out, "eval.jsonl"), [example(r, a.seed) for r in held])}
    with open(os.path.join(a.out, "dataset_info.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(json.dumps({"train": info["train"], "eval": info["eval"]}))


if __name__ == "__main__":
    main()
