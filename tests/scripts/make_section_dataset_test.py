#!/usr/bin/python3
"""scripts/data/make_section_dataset.py: parsing of apt-cache dumpavail
records, the split by package, determinism, and the committed demo data
(examples/debian-sections) being what its dataset_info.json says.

Runs on a synthetic index (no apt state needed); well under a second.
"""

import hashlib
import json
import os
import re
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "data"))

import debian_text  # noqa: E402
import make_section_dataset as msd  # noqa: E402

EXAMPLE = os.path.join(ROOT, "examples", "debian-sections")


def finetune_names(prefix, n):
    """n package names starting with prefix that fall in the finetune pool."""
    out, i = [], 0
    while len(out) < n:
        name = f"{prefix}{i}"
        if debian_text.bucket(name) in debian_text.FINETUNE_BUCKETS:
            out.append(name)
        i += 1
    return out


def record(name, section, summary, depends=None):
    lines = [f"Package: {name}", "Version: 1.0-1", f"Section: {section}"]
    if depends is not None:
        lines.append(f"Depends: {depends}")
    lines += [f"Description: {summary}", " A long description line", " ."]
    return "\n".join(lines)


def index_text():
    recs = []
    for section, prefix in (("python", "python3-x"), ("perl", "libx-perl"), ("contrib/rust", "librust-x")):
        for name in finetune_names(prefix, 12):
            recs.append(record(name, section, f"summary of {name}", "python3 (>= 3.11), libc6 | libc7, perl:any"))
    return "\n\n".join(recs) + "\n"


class ParseTest(unittest.TestCase):
    def test_fields_sections_and_dependencies(self):
        idx = msd.read_index(index_text(), max_depends=2)
        name = finetune_names("librust-x", 1)[0]
        section, summary, depends = idx[name]
        self.assertEqual(section, "rust")  # contrib/ dropped
        self.assertEqual(summary, f"summary of {name}")
        self.assertEqual(depends, "python3, libc6")  # versions, alternatives cut; at most 2

    def test_dependency_names(self):
        self.assertEqual(msd.dependency_names("", 4), "none")
        self.assertEqual(msd.dependency_names("a (>= 1) [amd64], b:any, a", 4), "a, b")

    def test_record_without_section_is_skipped(self):
        idx = msd.read_index("Package: a\nDescription: x\n\nPackage: b\nSection: utils\nDescription: y\n")
        self.assertEqual(list(idx), ["b"])


class SplitTest(unittest.TestCase):
    def test_split_by_package_deterministic_and_balanced(self):
        idx = msd.read_index(index_text())
        a = msd.select(idx, 0, 8, 3, 100, seed=0, only=["perl", "python", "rust"])
        b = msd.select(idx, 0, 8, 3, 100, seed=0, only=["perl", "python", "rust"])
        self.assertEqual(a, b)
        sections, held, train = a
        self.assertEqual(sections, ["perl", "python", "rust"])
        self.assertEqual(len(held), 9)
        self.assertEqual(len(train), 24)
        self.assertFalse({r[0] for r in held} & {r[0] for r in train})
        c = msd.select(idx, 0, 8, 3, 100, seed=1, only=["perl", "python", "rust"])
        self.assertNotEqual([r[0] for r in c[1]], [r[0] for r in held])

    def test_too_few_packages_is_an_error_naming_the_section(self):
        idx = msd.read_index(index_text())
        with self.assertRaisesRegex(SystemExit, "section perl: only 12 usable"):
            msd.select(idx, 0, 10, 3, 100, seed=0, only=["perl"])


class CommittedExampleTest(unittest.TestCase):
    def test_files_match_their_info_and_never_share_a_package(self):
        with open(os.path.join(EXAMPLE, "dataset_info.json")) as f:
            info = json.load(f)
        names, pattern = {}, re.compile(info["eval_pattern"])
        for split, file in (("train", "train.jsonl"), ("eval", "eval.jsonl")):
            with open(os.path.join(EXAMPLE, file), "rb") as f:
                raw = f.read()
            self.assertEqual(hashlib.sha256(raw).hexdigest(), info[split]["sha256"], file)
            rows = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
            self.assertEqual(len(rows), info[split]["examples"])
            names[split] = set()
            for r in rows:
                self.assertRegex(r["completion"], pattern)
                self.assertIn(json.loads(r["completion"])["section"], info["sections"])
                name = r["prompt"].split("\n", 1)[0].removeprefix("Package: ")
                self.assertIn(debian_text.bucket(name), debian_text.FINETUNE_BUCKETS)
                names[split].add(name)
        self.assertFalse(names["train"] & names["eval"])


if __name__ == "__main__":
    unittest.main()
