"""Real English text from the Debian package index on this machine.

Purpose: every Debian machine carries the package descriptions in apt's
Translation-en index (the long descriptions; `apt-cache dumpavail` alone
prints only the one-line summary). This module reads them, cleans them into
plain text and splits packages deterministically into two disjoint pools:

  * "pretrain" (hash bucket 0..6 of sha256(package name) mod 10): text the
    substitute base model was trained on (scripts/models/pretrain_llama.py);
  * "finetune" (buckets 7..9): the instruction data set
    (scripts/data/make_dataset.py) draws train and held-out examples only from
    here, so held-out loss is measured on descriptions the base model never saw.

The Translation-en index is present only when apt fetched it:
    apt-get update -o Acquire::Languages=en
(Docker images usually set Acquire::Languages "none").
"""

import glob
import hashlib
import os
import subprocess

PRETRAIN_BUCKETS = frozenset(range(0, 7))
FINETUNE_BUCKETS = frozenset(range(7, 10))

_LISTS_GLOB = "/var/lib/apt/lists/*_i18n_Translation-en*"
_FETCH_HINT = "run: apt-get update -o Acquire::Languages=en"


class NoTranslationsError(RuntimeError):
    pass


def translation_files(lists_glob=_LISTS_GLOB):
    files = sorted(f for f in glob.glob(lists_glob) if not f.endswith((".diff_Index", "IndexDiff")))
    if not files:
        raise NoTranslationsError(
            f"no apt Translation-en index under {os.path.dirname(lists_glob)}; {_FETCH_HINT}")
    return files


def _read_index(path):
    """Decompresses an apt index (lz4, gz, xz, zst or plain) with apt's own
    helper, which knows every compression apt itself uses."""
    out = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path],
                         check=True, capture_output=True)
    return out.stdout.decode("utf-8", errors="replace")


def clean_long_description(lines):
    """Debian policy 5.6.13: continuation lines start with one space; ' .'
    is an empty line; lines starting with two spaces are shown verbatim.
    Returns paragraphs joined by '\\n', verbatim lines kept as their own lines."""
    paras, cur = [], []

    def flush():
        if cur:
            paras.append(" ".join(cur))
            cur.clear()

    for raw in lines:
        body = raw[1:] if raw.startswith(" ") else raw
        if body.strip() == ".":
            flush()
            continue
        if body.startswith(" "):  # verbatim (lists, tables)
            flush()
            paras.append(body.strip())
            continue
        cur.append(body.strip())
    flush()
    return "\n".join(p for p in paras if p)


def parse_translations(text):
    """Yields (package, short, long) for each stanza of a Translation-en file."""
    pkg, short, long_lines, in_desc = None, None, [], False
    for line in text.split("\n") + [""]:
        if line == "":
            if pkg and short is not None:
                yield pkg, short.strip(), clean_long_description(long_lines)
            pkg, short, long_lines, in_desc = None, None, [], False
        elif line.startswith("Package: "):
            pkg = line[len("Package: "):].strip()
        elif line.startswith("Description-en: "):
            short, in_desc = line[len("Description-en: "):], True
        elif line.startswith(" ") and in_desc:
            long_lines.append(line)
        else:
            in_desc = False


def bucket(package):
    return hashlib.sha256(package.encode("utf-8")).digest()[0] % 10


def load_descriptions(lists_glob=_LISTS_GLOB):
    """Returns {package: (short, long)} over all Translation-en indexes; the
    first file (sorted path order) wins for a package listed twice."""
    out = {}
    for f in translation_files(lists_glob):
        for pkg, short, long in parse_translations(_read_index(f)):
            out.setdefault(pkg, (short, long))
    return out


def full_description(short, long):
    """One-line summary + long text, e.g. 'Fast array facility ... .\\nNumpy ...'."""
    short = short.rstrip()
    if short and short[-1] not in ".!?":
        short += "."
    return short + ("\n" + long if long else "")


def heldout_texts(descs, n=40):
    """The n descriptions of the finetune pool (never pretrained on) that
    measure the demo base model: every len/n-th package in name order. The
    pretraining run evaluates them (scripts/models/pretrain_llama.py) and
    check_model.py scores them with its float64 forward."""
    held = sorted(p for p in descs if bucket(p) in FINETUNE_BUCKETS)
    return [full_description(*descs[p]) for p in held[::max(1, len(held) // n)]][:n]
