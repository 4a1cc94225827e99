"""The commands shown in README.md and docs/*.md, checked and run.

  /usr/bin/python3 docs_test.py --bin BUILD/bin [unittest args, e.g. a class]

- CommandFlagsTest: every command line of every shell block that runs
  ftunectl, ftune-scheduler, ftune-worker or ftune-train names a real
  command and only flags that binary accepts (doccheck.py). Lines with
  docker, kubectl, helm or systemctl are skipped and counted.
- LinksTest: every relative link of those pages leads to an existing file
  and, for a Markdown file, an existing heading.
- ConfigReferenceTest: docs/operations.md names every flag that
  ftune-scheduler and ftune-worker define.
- RunbookTest: the blocks of docs/operations.md marked `# runbook: NAME`
  run as they are against a real ftune-scheduler (and ftune-worker): online
  backup, restore, schema version, tenant/admin/worker key rotation. Their
  site-specific assignments (DB=..., ADMIN_KEY=...) are replaced by the
  test's paths, and `systemctl stop|start|restart ftune-scheduler|
  ftune-worker` lines stop and start the real processes.
- DatasetDocTest: every console example of docs/datasets.md that uploads a
  file runs against a real scheduler: the JSONL block just above it is the
  file, and what ftunectl prints must be what the doc shows ('...'
  matches anything).
- OpenAiCompatDocTest: the curl examples of docs/openai-compat.md run
  against a real scheduler serving the OpenAI-compatible HTTP API, with
  OPENAI_BASE_URL and OPENAI_API_KEY set; what they print must be what the
  doc shows.
- HyperparametersDocTest: the console examples of docs/hyperparameters.md
  (dry runs that print the resolved defaults and the plan) run the same
  way, against a scheduler with the doc's model registered and the doc's
  2,000 + 200 examples uploaded as $TRAIN and $EVAL.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doccheck  # noqa: E402

REPO = doccheck.REPO
BIN = None  # --bin


# --- Processes -----------------------------------------------------------

def wait_for_line(path, prefix, proc, timeout=30):
    """The rest of the first line of `path` that starts with `prefix`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{path} never printed {prefix} (exit status "
                         f"{proc.poll()})")


class Scheduler:
    """A real ftune-scheduler over a database in `work`, on free ports
    first, then on the same gRPC address after a restart."""

    def __init__(self, work, admin_key_file, worker_key_file, config=None,
                 http_api=False):
        self.work = Path(work)
        self.config = config
        self.http_api = http_api
        self.http_address = None
        self.db = self.work / "db" / "sched.db"
        self.storage = self.work / "storage"
        self.admin_key_file = Path(admin_key_file)
        self.worker_key_file = Path(worker_key_file)
        self.address = "127.0.0.1:0"
        self.proc = None
        self.starts = 0
        self.db.parent.mkdir(parents=True, exist_ok=True)
        (self.storage / "models").mkdir(parents=True, exist_ok=True)

    def start(self, expect_failure=False):
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        out = self.work / f"scheduler-{self.starts}.out"
        self.log = self.work / f"scheduler-{self.starts}.log"
        with open(out, "w") as stdout, open(self.log, "w") as stderr:
            self.proc = subprocess.Popen(
                [str(Path(BIN) / "ftune-scheduler"),
                 f"--grpc_address={self.address}", f"--db={self.db}",
                 f"--storage_root={self.storage}",
                 "--metrics_address=127.0.0.1:0",
                 f"--admin_key_file={self.admin_key_file}",
                 f"--worker_key_file={self.worker_key_file}",
                 "--lease_duration=6s", "--heartbeat_interval=1s"]
                + ([f"--config={self.config}"] if self.config else [])
                + (["--http_address=127.0.0.1:0"] if self.http_api else []),
                stdout=stdout, stderr=stderr)
        if expect_failure:
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                code = None  # it started after all; tearDown stops it
            return code, self.log.read_text()
        self.address = wait_for_line(out, "grpc_address=", self.proc)
        if self.http_api:
            self.http_address = wait_for_line(out, "http_address=", self.proc)
        return 0, ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=30)
            assert code == 0, f"ftune-scheduler exited {code}: " \
                              f"{self.log.read_text()[-2000:]}"

    def restart(self):
        self.stop()
        self.start()


class Worker:
    """A real ftune-worker (stand-in trainer, one CPU slot)."""

    def __init__(self, work, scheduler, key_file):
        self.work = Path(work)
        self.scheduler = scheduler
        self.key_file = Path(key_file)
        self.proc = None
        self.starts = 0
        self.worker_id = None

    def start(self, expect_failure=False):
        self.starts += 1
        out = self.work / f"worker-{self.starts}.out"
        self.log = self.work / f"worker-{self.starts}.log"
        with open(out, "w") as stdout, open(self.log, "w") as stderr:
            self.proc = subprocess.Popen(
                [str(Path(BIN) / "ftune-worker"),
                 f"--scheduler={self.scheduler.address}",
                 f"--storage_root={self.scheduler.storage}",
                 f"--worker_key_file={self.key_file}",
                 f"--trainer={Path(BIN) / 'ftune-stand-in-trainer'}",
                 f"--work_dir={self.work / 'worker-scratch'}",
                 "--cpu_slots=1", "--gpus=none", "--metrics_address="],
                stdout=stdout, stderr=stderr)
        if expect_failure:
            try:
                return self.proc.wait(timeout=30), self.log.read_text()
            except subprocess.TimeoutExpired:
                return None, self.log.read_text()
        self.worker_id = wait_for_line(out, "worker_id=", self.proc)
        return 0, ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def new_key(path):
    path.write_text(os.urandom(24).hex() + "\n")
    return path


class Cluster(unittest.TestCase):
    """Base: a scheduler (and optionally a worker) in a temp dir, and
    ftunectl against it. MODELS: {name: config.json content} registered
    with the scheduler (a config.json is all the scheduler reads)."""

    MODELS = {}
    HTTP_API = False  # serve the OpenAI-compatible HTTP API too

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="ftune-docs-test-"))
        keys = self.tmp / "keys"
        keys.mkdir()
        self.admin_key = new_key(keys / "admin.key")
        self.worker_key = new_key(keys / "worker.key")
        config = None
        if self.MODELS:
            config = self.tmp / "scheduler.json"
            config.write_text(json.dumps(
                {"models": [{"name": n} for n in self.MODELS]}))
        self.scheduler = Scheduler(self.tmp, self.admin_key, self.worker_key,
                                   config, http_api=self.HTTP_API)
        for name, model_config in self.MODELS.items():
            model_dir = self.scheduler.storage / "models" / name
            model_dir.mkdir(parents=True)
            (model_dir / "config.json").write_text(json.dumps(model_config))
        self.worker = None
        self.addCleanup(self.stop_everything)
        self.scheduler.start()

    def stop_everything(self):
        if self.worker:
            self.worker.stop()
        self.scheduler.stop()
        if os.environ.get("FTUNE_DOCS_TEST_KEEP") == "1":
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, **extra):
        env = dict(os.environ)
        for name in ("FTUNE_API_KEY", "FTUNE_API_KEY_FILE", "FTUNE_CONFIG",
                     "FTUNE_PROFILE", "FTUNE_ENDPOINT", "FTUNE_OUTPUT",
                     "FTUNE_TLS", "FTUNE_TLS_CA", "FTUNE_TLS_CERT",
                     "FTUNE_TLS_KEY", "FTUNE_TLS_SERVER_NAME"):
            env.pop(name, None)
        env["FTUNE_ADDRESS"] = self.scheduler.address
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
        env["HOME"] = str(self.tmp)  # no ~/.config/ftune/config.yaml
        env.pop("XDG_CONFIG_HOME", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def ctl(self, *args, key_file=None, check=True):
        cmd = [str(Path(BIN) / "ftunectl")]
        if key_file is not None:
            cmd += ["--api-key-file", str(key_file)]
        out = subprocess.run(cmd + [str(a) for a in args], env=self.env(),
                             capture_output=True, text=True, timeout=60)
        if check:
            self.assertEqual(out.returncode, 0,
                             f"ftunectl {' '.join(map(str, args))}: "
                             f"{out.stdout}{out.stderr}")
        return out

    def make_tenant(self, name):
        tenant = self.ctl("tenants", "create", name,
                          key_file=self.admin_key).stdout.strip()
        created = json.loads(self.ctl("--output", "json", "keys", "create",
                                      "--tenant", tenant,
                                      key_file=self.admin_key).stdout)
        key_file = self.tmp / "keys" / f"{name}.key"
        key_file.write_text(created["secret"] + "\n")
        return tenant, created["apiKey"]["id"], key_file

    # --- running a doc block ----------------------------------------------

    def run_block(self, block, values, cwd=None):
        """Runs a `# runbook:` block: its assignments of the names in
        `values` replaced, split at `systemctl` lines which act on the real
        processes. Returns the combined output of the shell parts."""
        lines = doccheck.substitute_assignments(block.lines, values)
        cwd = Path(cwd or self.tmp / "cwd")
        cwd.mkdir(exist_ok=True)
        assignments = []
        segment = []
        output = []

        def run_segment():
            if not any(l.strip() and not l.strip().startswith("#")
                       for l in segment):
                return
            script = "set -euo pipefail\n" + "\n".join(assignments + segment)
            out = subprocess.run(["bash", "-c", script], cwd=cwd,
                                 env=self.env(), capture_output=True,
                                 text=True, timeout=60)
            output.append(out.stdout + out.stderr)
            self.assertEqual(out.returncode, 0,
                             f"{block.where()}: the block failed "
                             f"(exit {out.returncode}):\n{script}\n---\n"
                             f"{out.stdout}{out.stderr}")

        for line in lines:
            stripped = line.strip()
            if stripped.startswith("systemctl "):
                run_segment()
                assignments += [l for l in segment
                                if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", l)]
                segment = []
                self.systemctl(shlex.split(stripped, comments=True)[1:],
                               block)
                continue
            segment.append(line)
        run_segment()
        return "".join(output)

    def systemctl(self, args, block):
        verb, unit = args[0], args[1]
        procs = {"ftune-scheduler": self.scheduler, "ftune-worker": self.worker}
        self.assertIn(unit, procs, f"{block.where()}: systemctl {unit}?")
        proc = procs[unit]
        self.assertIsNotNone(proc, f"{block.where()}: no {unit} in this test")
        if verb in ("stop", "restart"):
            proc.stop()
        if verb in ("start", "restart"):
            proc.start()
        self.assertIn(verb, ("stop", "start", "restart"))


def runbook_block(tag):
    blocks = doccheck.tagged_blocks(REPO / "docs/operations.md", tag)
    assert len(blocks) == 1, \
        f"docs/operations.md has {len(blocks)} blocks '# runbook: {tag}'"
    return blocks[0]


# --- The tests -------------------------------------------------------------

class CommandFlagsTest(unittest.TestCase):
    def test_documented_commands_use_real_commands_and_flags(self):
        checker = doccheck.FlagChecker(BIN)
        total = doccheck.Report()
        for path in doccheck.documentation_files():
            total.merge(doccheck.check_markdown(path, checker))
        print(f"\n{total.checked} command lines checked, {total.skipped} "
              f"skipped (docker, kubectl, helm, systemctl)")
        self.assertGreater(total.checked, 50)
        self.assertEqual(total.problems, [],
                         f"\n{len(total.problems)} problem(s):\n"
                         + "\n".join(total.problems))

    def test_checker_catches_mistakes(self):
        # A made-up page: each line below must be reported, with its line.
        page = "\n".join([
            "# Sample",                                          # 1
            "```sh",                                             # 2
            "ftunectl jobs create --model m --epoch 3",          # 3
            "ftunectl jobs frobnicate job-1",                    # 4
            "FILE=$(ftunectl files upload x.jsonl --purpse v)",  # 5
            "build/bin/ftune-scheduler --db=x --grpc_adress=:1",  # 6
            "ftune-worker \\",                                   # 7
            "  --storage_root=/s \\",                            # 8
            "  --cpu-slots=2",                                   # 9
            "ftune-train --spec s.json --thread 2",              # 10
            "docker-compose exec scheduler ftunectl nope",       # 11
            "ftunectl --api-key-file k keys create --tenant t",  # 12 fine
            "ftunectl files upload a.jsonl | ftunectl --bogus status",  # 13
            "ftune-worker --storage_root=/s \\   # comment",     # 14
            "```",                                               # 15
            "```console",                                        # 16
            "$ ftunectl files list --purpose x --al",            # 17
            "ftunectl output is not a command --nope",           # 18
            "```",                                               # 19
        ])
        report = doccheck.check_markdown(Path("sample.md"),
                                         doccheck.FlagChecker(BIN), page)
        got = "\n".join(report.problems)
        for line, text in [(3, "unknown flag --epoch"),
                           (4, 'unknown command "jobs frobnicate"'),
                           (5, "unknown flag --purpse"),
                           (6, "unknown flag --grpc_adress"),
                           (7, "unknown flag --cpu-slots"),
                           (10, "unknown flag --thread"),
                           (13, "unknown flag --bogus"),
                           (14, "followed by a comment"),
                           (17, "unknown flag --al")]:
            self.assertRegex(got, rf"sample\.md:{line}: .*{re.escape(text)}")
        self.assertNotIn("sample.md:12:", got)
        self.assertNotIn("--nope", got)
        self.assertEqual(report.skipped, 1)
        self.assertEqual(len(report.problems), 9, got)


class LinksTest(unittest.TestCase):
    def test_relative_links_and_anchors_exist(self):
        problems = [p for path in doccheck.documentation_files()
                    for p in doccheck.broken_links(path)]
        self.assertEqual(problems, [], "\n" + "\n".join(problems))

    def test_checker_catches_broken_links(self):
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "page.md"
            page.write_text("# Top\n\n## A section\n\n"
                            "[ok](#a-section) [ok](page.md#top) "
                            "[bad](#nowhere) [bad](missing.md)\n"
                            "```\n[not a link](#in-code)\n```\n")
            problems = doccheck.broken_links(page)
        self.assertEqual(len(problems), 2, problems)
        self.assertIn("page.md:5: link to a missing heading: #nowhere",
                      problems[0])
        self.assertIn("page.md:5: link to a missing file: missing.md",
                      problems[1])


class ConfigReferenceTest(unittest.TestCase):
    """docs/operations.md's configuration reference names every flag the
    scheduler and the worker define."""

    def test_every_flag_is_in_the_runbook(self):
        doc = (REPO / "docs/operations.md").read_text()
        checker = doccheck.FlagChecker(BIN)
        missing = [f"{binary} --{name}"
                   for binary in ("ftune-scheduler", "ftune-worker")
                   for name in sorted(checker.own_flags(binary))
                   if f"`--{name}`" not in doc]
        self.assertEqual(missing, [], "flags missing from the configuration "
                         "reference of docs/operations.md")


class RunbookTest(Cluster):
    def test_online_backup_then_restore(self):
        before = self.ctl("tenants", "create", "made-before-the-backup",
                          key_file=self.admin_key).stdout.strip()
        backup = self.tmp / "backups" / "sched-backup.db"
        out = self.run_block(runbook_block("backup"),
                             {"DB": self.scheduler.db, "BACKUP": backup})
        self.assertEqual(out.strip().splitlines()[-1], "ok", out)
        self.assertTrue(backup.exists())
        # The scheduler keeps serving; this one is not in the backup.
        after = self.ctl("tenants", "create", "made-after-the-backup",
                         key_file=self.admin_key).stdout.strip()

        out = self.run_block(runbook_block("restore"),
                             {"DB": self.scheduler.db, "BACKUP": backup})
        self.assertIn("ok", out)
        listed = self.ctl("tenants", "list", key_file=self.admin_key).stdout
        self.assertIn(before, listed)
        self.assertNotIn(after, listed)
        self.assertTrue(Path(f"{self.scheduler.db}.before-restore").exists())

    def test_schema_version_and_refusing_a_newer_schema(self):
        out = self.run_block(runbook_block("schema-version"),
                             {"DB": self.scheduler.db})
        version = int(out.strip().splitlines()[-1])
        self.assertGreaterEqual(version, 1)
        # An older binary on a newer database: refused, untouched.
        self.scheduler.stop()
        subprocess.run(["sqlite3", str(self.scheduler.db),
                        f"PRAGMA user_version={version + 1}"], check=True)
        code, log = self.scheduler.start(expect_failure=True)
        self.assertEqual(code, 1)
        self.assertIn(f"database schema version {version + 1} is newer than "
                      f"this binary supports ({version})", log)
        doc = (REPO / "docs/operations.md").read_text()
        self.assertIn("is newer than this binary supports", doc)
        subprocess.run(["sqlite3", str(self.scheduler.db),
                        f"PRAGMA user_version={version}"], check=True)
        self.scheduler.start()

    def test_rotate_a_tenant_key(self):
        tenant, old_key_id, old_key = self.make_tenant("rotating-team")
        self.ctl("files", "list", key_file=old_key)
        cwd = self.tmp / "rotate"
        self.run_block(runbook_block("rotate-tenant-key"),
                       {"ADMIN_KEY": self.admin_key, "TENANT": tenant,
                        "OLD_KEY": old_key_id}, cwd=cwd)
        created = json.loads((cwd / "new-key.json").read_text())
        new_key = self.tmp / "keys" / "new.key"
        new_key.write_text(created["secret"] + "\n")
        self.ctl("files", "list", key_file=new_key)
        refused = self.ctl("files", "list", key_file=old_key, check=False)
        self.assertEqual(refused.returncode, 1, refused.stderr)
        self.assertIn("UNAUTHENTICATED", refused.stderr)

    def test_rotate_the_admin_key(self):
        old = self.tmp / "keys" / "old-admin.key"
        shutil.copy(self.admin_key, old)
        self.run_block(runbook_block("rotate-admin-key"),
                       {"ADMIN_KEY": self.admin_key,
                        "NEW_ADMIN_KEY": self.tmp / "admin.key.new"})
        self.assertNotEqual(old.read_text(), self.admin_key.read_text())
        self.assertGreaterEqual(len(self.admin_key.read_text().strip()), 16)
        self.ctl("tenants", "list", key_file=self.admin_key)
        refused = self.ctl("tenants", "list", key_file=old, check=False)
        self.assertEqual(refused.returncode, 1, refused.stderr)
        self.assertIn("UNAUTHENTICATED", refused.stderr)

    def test_rotate_the_worker_key(self):
        self.worker = Worker(self.tmp, self.scheduler, self.worker_key)
        self.worker.start()
        first_id = self.worker.worker_id
        old = self.tmp / "keys" / "old-worker.key"
        shutil.copy(self.worker_key, old)
        self.run_block(runbook_block("rotate-worker-key"),
                       {"WORKER_KEY": self.worker_key,
                        "NEW_KEY": self.tmp / "worker.key.new"})
        self.assertNotEqual(old.read_text(), self.worker_key.read_text())
        self.assertNotEqual(self.worker.worker_id, first_id)
        listed = self.ctl("workers", "list", "--state", "active",
                          key_file=self.admin_key).stdout
        self.assertIn(self.worker.worker_id, listed)
        # A worker still holding the old key cannot register.
        stale = Worker(self.tmp, self.scheduler, old)
        try:
            code, log = stale.start(expect_failure=True)
        finally:
            stale.stop()
        self.assertEqual(code, 1, log)
        self.assertIn("UNAUTHENTICATED", log)


class ConsoleDocTest(Cluster):
    """Runs the console examples of one doc: each `$ ` command in bash (in
    a fresh directory per block, PATH starting with the build's bin/,
    FTUNE_ADDRESS and FTUNE_API_KEY_FILE set), and compares what it prints
    (stdout and stderr) with the lines the doc shows under it. A data
    block (jsonl, yaml, json) just above a console block is the file the
    block's first `files upload FILE` or `--spec-file FILE` names."""

    DOC = None
    FILE_ARGUMENT = re.compile(
        r"(?:(?:files upload|--spec-file)\s+|file=@|\bjq\b[^|]*'\s+)"
        r"([\w./-]+)")

    def run_doc_examples(self, key, env=None, select=lambda steps: True):
        blocks = doccheck.fenced_blocks(self.DOC)
        ran = []
        for i, block in enumerate(blocks):
            if block.lang != "console":
                continue
            steps = doccheck.console_steps(block)
            if not steps or not select(steps):
                continue
            cwd = self.tmp / f"example-{block.first_line}"
            cwd.mkdir()
            previous = blocks[i - 1] if i > 0 else None
            if previous is not None and \
                    previous.lang in ("jsonl", "yaml", "json") and \
                    adjacent(previous, block):
                names = [m.group(1) for s in steps
                         for m in [self.FILE_ARGUMENT.search(s.command)] if m]
                self.assertTrue(names, f"{block.where()}: the {previous.lang}"
                                       f" block above names no file")
                data = doccheck.decode_raw_bytes(
                    "\n".join(previous.lines) + "\n")
                (cwd / names[0]).write_bytes(data)
            with self.subTest(example=block.where()):
                self.run_console(steps, cwd, key, env or {})
            ran.append(steps)
        return ran

    def run_console(self, steps, cwd, key, env):
        marker = "@@ftune-docs-step@@"
        script = ["exec 2>&1"]
        for n, step in enumerate(steps):
            script.append(f"echo {marker}{n}")
            script.append(step.command)
        out = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd,
                             env=self.env(FTUNE_API_KEY_FILE=key, **env),
                             capture_output=True, text=True, timeout=120)
        parts = re.split(rf"^{marker}\d+\n", out.stdout, flags=re.M)[1:]
        self.assertEqual(len(parts), len(steps), out.stdout)
        for step, actual in zip(steps, parts):
            actual_lines = actual.rstrip("\n").split("\n") if actual else []
            self.assertTrue(
                doccheck.output_matches(step.expected, actual_lines),
                f"\n{doccheck.display(self.DOC)}:{step.line}: $ {step.command}"
                f"\nthe doc shows:\n" + "\n".join(step.expected) +
                "\nit printed:\n" + "\n".join(actual_lines))


class DatasetDocTest(ConsoleDocTest):
    DOC = REPO / "docs/datasets.md"

    def test_examples_print_what_the_doc_shows(self):
        _, _, key = self.make_tenant("datasets-doc")
        ran = self.run_doc_examples(
            key, select=lambda steps: any("files upload" in s.command
                                          for s in steps))
        errors = sum("INVALID_ARGUMENT" in "\n".join(s.expected)
                     for steps in ran for s in steps)
        print(f"\n{len(ran)} examples of {doccheck.display(self.DOC)} run, "
              f"{errors} of them errors")
        self.assertGreaterEqual(errors, 30)


class HyperparametersDocTest(ConsoleDocTest):
    DOC = REPO / "docs/hyperparameters.md"
    # The doc's model: a Llama 3.2 1B-shaped config.json.
    MODELS = {"llama-3.2-1b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "max_position_embeddings": 131072,
        "torch_dtype": "bfloat16"}}

    def test_dry_runs_print_what_the_doc_shows(self):
        # As the doc says: 2,000 training and 200 validation examples.
        _, _, key = self.make_tenant("hyperparameters-doc")
        data = self.tmp / "data"
        data.mkdir()
        (data / "train.jsonl").write_text("".join(
            json.dumps({"prompt": f"Question {i}?", "completion": f" {i}."})
            + "\n" for i in range(2000)))
        (data / "eval.jsonl").write_text("".join(
            json.dumps({"prompt": f"Question {i}?", "completion": f" {i}."})
            + "\n" for i in range(2000, 2200)))
        train = self.ctl("files", "upload", data / "train.jsonl",
                         key_file=key).stdout.strip()
        evaluation = self.ctl("files", "upload", data / "eval.jsonl",
                              "--purpose", "validation",
                              key_file=key).stdout.strip()
        ran = self.run_doc_examples(key, env={"TRAIN": train,
                                              "EVAL": evaluation})
        print(f"\n{len(ran)} examples of {doccheck.display(self.DOC)} run")
        self.assertGreaterEqual(len(ran), 3)


class OpenAiCompatDocTest(ConsoleDocTest):
    DOC = REPO / "docs/openai-compat.md"
    MODELS = HyperparametersDocTest.MODELS
    HTTP_API = True

    def test_curl_examples_print_what_the_doc_shows(self):
        _, _, key = self.make_tenant("openai-doc")
        ran = self.run_doc_examples(key, env={
            "OPENAI_BASE_URL": f"http://{self.scheduler.http_address}/v1",
            "OPENAI_API_KEY": key.read_text().strip()})
        print(f"\n{len(ran)} examples of {doccheck.display(self.DOC)} run")
        self.assertGreaterEqual(len(ran), 3)


def adjacent(first, second):
    """True if only blank lines separate block `first` from `second`."""
    text = first.path.read_text(encoding="utf-8").split("\n")
    closing = first.first_line + len(first.lines)  # 1-based closing fence
    between = text[closing:second.first_line - 2]
    return all(not l.strip() for l in between)


def main():
    global BIN
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    args, rest = parser.parse_known_args()
    BIN = str(Path(args.bin).resolve())
    unittest.main(module="__main__", argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
