#!/usr/bin/python3
"""scripts/data/make_record_dataset.py: parsing of apt-cache dumpavail
records, the dependency count, the completion matching its own pattern,
the split by package, determinism, and the committed
examples/debian-records being what its dataset_info.json says.

Runs on a synthetic index (no apt state needed); well under a second.
"""

import hashlib
import json
import os
import re
import sys
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "data"))

import debian_text  # noqa: E402
import make_record_dataset as mrd  # noqa: E402

EXAMPLE = os.path.join(ROOT, "examples", "debian-records")


def finetune_names(prefix, n):
    """n package names starting with prefix that fall in the finetune pool."""
    out, i = [], 0
    while len(out) < n:
        name = f"{prefix}{i}"
        if debian_text.bucket(name) in debian_text.FINETUNE_BUCKETS:
            out.append(name)
        i += 1
    return out


def record(name, section="utils", depends=None, priority="optional"):
    lines = [f"Package: {name}", "Version: 1.0-1", "Installed-Size: 42", f"Section: {section}",
             f"Priority: {priority}"]
    if depends is not None:
        lines.append(f"Depends: {depends}")
    lines += ["Description: a summary", " A long description line", " ."]
    return "\n".join(lines)


def index_text(n=20):
    recs = [record(name, "contrib/net", "libc6 (>= 2.34), a | b, c:any") for name in finetune_names("x", n)]
    recs.append(record(finetune_names("many", 1)[0], depends="a, b, c, d, e"))
    return "\n\n".join(recs) + "\n"


class ParseTest(unittest.TestCase):
    def test_fields_and_section_prefix(self):
        name = finetune_names("x", 1)[0]
        fields = mrd.read_index(index_text())[name]
        self.assertEqual(fields["Section"], "net")  # contrib/ dropped
        self.assertEqual(fields["Version"], "1.0-1")
        self.assertNotIn("Description", fields)

    def test_dependency_count(self):
        self.assertEqual(mrd.depends_count(""), 0)
        self.assertEqual(mrd.depends_count("libc6 (>= 2.34), a | b, c:any"), 3)

    def test_record_without_priority_is_skipped(self):
        idx = mrd.read_index("Package: a\nVersion: 1\nSection: x\n\n" + record("b"))
        self.assertEqual(list(idx), ["b"])


class ExampleTest(unittest.TestCase):
    def test_completion_is_the_format_and_the_prompt_has_every_field(self):
        fields = mrd.read_index(record("pkg", "libs", "a, b"))["pkg"]
        ex = mrd.example(fields, seed=0)
        self.assertEqual(ex["completion"], "Section libs, priority optional, two dependencies, name pkg.")
        self.assertRegex(ex["completion"], mrd.PATTERN)
        self.assertTrue(ex["prompt"].startswith(mrd.HEADER) and ex["prompt"].endswith(mrd.FOOTER))
        for k in mrd.FIELDS:
            self.assertIn(f"\n{k}: {fields[k]}\n", ex["prompt"])
        none = mrd.example(mrd.read_index(record("q"))["q"], seed=0)["completion"]
        self.assertIn(", no dependencies,", none)

    def test_field_order_varies_between_packages(self):
        idx = mrd.read_index(index_text())
        orders = {tuple(line.split(":")[0] for line in mrd.example(f, 0)["prompt"].splitlines()[1:-1])
                  for f in idx.values()}
        self.assertGreater(len(orders), 1)


class SplitTest(unittest.TestCase):
    def test_split_by_package_deterministic_and_max_depends(self):
        idx = mrd.read_index(index_text())
        a = mrd.select(idx, 12, 4, 4, seed=0)
        self.assertEqual(a, mrd.select(idx, 12, 4, 4, seed=0))
        held, train = a
        self.assertEqual((len(held), len(train)), (4, 12))
        self.assertFalse({r["Package"] for r in held} & {r["Package"] for r in train})
        self.assertFalse(any(r["Package"].startswith("many") for r in held + train))  # 5 > 4 depends
        c = mrd.select(idx, 12, 4, 4, seed=1)
        self.assertNotEqual([r["Package"] for r in c[0]], [r["Package"] for r in held])

    def test_too_few_packages_is_an_error(self):
        with self.assertRaisesRegex(SystemExit, "only 20 usable packages"):
            mrd.select(mrd.read_index(index_text()), 18, 4, 4, seed=0)


class CommittedExampleTest(unittest.TestCase):
    def test_files_match_their_info_and_never_share_a_package(self):
        with open(os.path.join(EXAMPLE, "dataset_info.json")) as f:
            info = json.load(f)
        with open(os.path.join(EXAMPLE, "spec.json")) as f:
            spec = json.load(f)
        self.assertEqual(info["eval_pattern"], mrd.PATTERN)
        self.assertEqual(spec["task_metrics"]["eval_pattern"], mrd.PATTERN)
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
                name = re.search(r"\nPackage: (\S+)\n", r["prompt"]).group(1)
                self.assertTrue(r["completion"].endswith(f" name {name}."))
                self.assertIn(debian_text.bucket(name), debian_text.FINETUNE_BUCKETS)
                names[split].add(name)
        self.assertFalse(names["train"] & names["eval"])


if __name__ == "__main__":
    unittest.main()
