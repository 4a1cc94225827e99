"""Readers for the deployment files, shared by the deploy_files tests.

docker-compose.yml (resolved by `docker-compose config`, which needs no
Docker engine), the Dockerfiles under deploy/docker/, the Kubernetes
manifests under deploy/k8s/, the shell blocks of the deployment docs, and
the flags the real binaries accept (`--helpfull`, `ftunectl ... --help`).
Plain functions over plain data, plus FlagChecker and main() for the
tests.
"""

import argparse
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_TLS = REPO / "deploy/docker/compose.tls.yml"
COMPOSE_NFS = REPO / "deploy/docker/compose.nfs.yml"
DOCKERFILES = {
    "deploy/docker/Dockerfile": REPO / "deploy/docker/Dockerfile",
    "deploy/docker/Dockerfile.cuda": REPO / "deploy/docker/Dockerfile.cuda",
}
K8S_DIR = REPO / "deploy/k8s"
DOCS = [REPO / "deploy/README.md", REPO / "docs/deployment.md"]
# Operator-made files (secrets, models, site config) live under local/,
# created by the documented commands; never in git or an image.
LOCAL_DIR = "local"

BIN = None  # --bin: the build's bin/ directory (main())

# Binaries that take absl flags (--name=value), by the name used in
# commands.
ABSL_BINARIES = ("ftune-scheduler", "ftune-worker")


# --- flags of the real binaries ------------------------------------------------

def absl_flags(binary):
    """Flag names `binary --helpfull` lists (absl: `  --name (help...)`)."""
    out = subprocess.run([str(binary), "--helpfull"], capture_output=True,
                         text=True, timeout=60, check=False)
    return set(re.findall(r"^\s+--([A-Za-z0-9_]+) \(", out.stdout + out.stderr,
                          re.M))


def _dash_flags(help_text):
    """{flag: takes_value} from help lines like `  --address HOST:PORT  ...`."""
    flags = {}
    for m in re.finditer(r"^\s+(?:-\w, )?--([a-z0-9-]+)( [A-Z_:]+[A-Z])?",
                         help_text, re.M):
        flags[m.group(1)] = bool(m.group(2))
    return flags


def ftunectl_help(ftunectl, *words):
    """(returncode, {flag: takes_value}) of `ftunectl WORDS... --help`."""
    out = subprocess.run([str(ftunectl), *words, "--help"],
                         capture_output=True, text=True, timeout=30,
                         check=False)
    return out.returncode, _dash_flags(out.stdout + out.stderr)


def flag_name(arg):
    """'--db=/x' -> 'db'; None for an argument that is not a flag."""
    m = re.match(r"^--([A-Za-z0-9_-]+)(=|$)", arg)
    return m.group(1) if m else None


def flag_value(args, name):
    """Value of --name=VALUE in args, or None."""
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def port_of(address):
    return int(address.rsplit(":", 1)[1])


# --- docker-compose ------------------------------------------------------------

def compose_env(**overrides):
    """Environment for docker-compose: no daemon reachable, proving none is
    needed; FTUNE_* variables from the caller's environment dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTUNE_")}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def compose_cmd(files=(COMPOSE_FILE,), profiles=()):
    cmd = ["docker-compose"]
    for f in files:
        cmd += ["-f", str(f)]
    for p in profiles:
        cmd += ["--profile", p]
    return cmd


def compose_config(files=(COMPOSE_FILE,), profiles=(), env=None):
    """The resolved configuration (`docker-compose config`) as a dict."""
    out = subprocess.run(compose_cmd(files, profiles) + ["config"],
                         capture_output=True, text=True, timeout=60,
                         check=False, cwd=REPO, env=env or compose_env())
    if out.returncode != 0:
        raise RuntimeError(f"docker-compose config: {out.stderr}")
    return yaml.safe_load(out.stdout)


def compose_raw():
    with open(COMPOSE_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def command_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, list) else shlex.split(value)


def split_volume(spec):
    """'src:dst[:mode]' -> (src, dst, mode)."""
    parts = spec.split(":")
    if len(parts) == 2:
        return parts[0], parts[1], "rw"
    return parts[0], parts[1], parts[2]


def active_services(config, profiles):
    """Services `up` starts with these profiles (no profile = always)."""
    return {name: svc for name, svc in config["services"].items()
            if not svc.get("profiles")
            or set(svc["profiles"]) & set(profiles)}


def container_ports(svc):
    """Container-side ports a compose service exposes or publishes."""
    ports = {int(p) for p in svc.get("expose", [])}
    for p in svc.get("ports", []):
        spec = p if isinstance(p, str) else str(p.get("target"))
        ports.add(int(spec.split("/")[0].rsplit(":", 1)[-1]))
    return ports


def start_order(services):
    """Service names so that each comes after everything it depends on."""
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for dep in services[name].get("depends_on", {}) or {}:
            if dep in services:
                visit(dep)
        order.append(name)

    for name in sorted(services):
        visit(name)
    return order


# --- Dockerfiles ---------------------------------------------------------------

@dataclasses.dataclass
class Stage:
    name: str
    base: str
    instructions: list  # [(KEYWORD, text)]


def parse_dockerfile(path):
    """Stages of a Dockerfile, with ARG defaults before the first FROM
    substituted into FROM lines. Continuation lines are joined; comment
    lines dropped."""
    logical, current = [], ""
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    global_args, stages = {}, []
    for line in logical:
        keyword, _, text = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = text.partition("=")
            global_args[name.strip()] = default.strip()
        elif keyword == "FROM":
            parts = text.split()
            base = re.sub(r"\$\{(\w+)\}",
                          lambda m: global_args.get(m.group(1), m.group(0)),
                          parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" \
                else str(len(stages))
            stages.append(Stage(name=name, base=base, instructions=[]))
        elif stages:
            stages[-1].instructions.append((keyword, text))
    return stages


def stage_chain(stages, name):
    """The stage `name` and the stages it is built FROM, nearest first."""
    by_name = {s.name: s for s in stages}
    chain = []
    while name in by_name:
        chain.append(by_name[name])
        name = by_name[name].base
    return chain


def apt_packages(stage):
    """Packages named after `apt-get install` in a stage's RUN lines."""
    pkgs = []
    for keyword, text in stage.instructions:
        if keyword != "RUN":
            continue
        for m in re.finditer(r"apt-get install((?:\s+[^&|;\s]+)+)", text):
            pkgs += [t for t in m.group(1).split() if not t.startswith("-")]
    return pkgs


def exec_form(text):
    """JSON exec form ["a", "b"] -> list; None for the shell form."""
    text = text.strip()
    if not text.startswith("["):
        return None
    return yaml.safe_load(text)


def install_deps_packages():
    """The PACKAGES array of scripts/install-deps.sh."""
    text = (REPO / "scripts/install-deps.sh").read_text(encoding="utf-8")
    body = re.search(r"^PACKAGES=\((.*?)^\)", text, re.M | re.S).group(1)
    body = re.sub(r"#.*", "", body)
    return set(body.split())


# --- Kubernetes ------------------------------------------------------------------

def k8s_files():
    return sorted(p for p in K8S_DIR.rglob("*.yaml")
                  if p.name != "kustomization.yaml")


def k8s_docs(paths=None):
    """Every non-empty YAML document of the manifests, with its file."""
    docs = []
    for path in paths or k8s_files():
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    docs.append((path, doc))
    return docs


def kustomize(directory):
    """Rendered documents of `kubectl kustomize DIR`, or None without
    kubectl (it renders offline; Debian 12 does not package it)."""
    if shutil.which("kubectl") is None:
        return None
    out = subprocess.run(["kubectl", "kustomize", str(directory)],
                         capture_output=True, text=True, timeout=60,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory}: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if kind == "Pod":
        return doc["spec"]
    return None


def pod_metadata(doc):
    if doc.get("kind") == "Pod":
        return doc["metadata"]
    return doc["spec"]["template"]["metadata"]


# --- docs ----------------------------------------------------------------------

TESTED = re.compile(r"^# tested: ([a-z0-9-]+)")
NOT_EXERCISED = re.compile(r"^# not exercised here")


@dataclasses.dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str

    @property
    def first_line(self):
        return self.text.splitlines()[0] if self.text else ""

    @property
    def tested_name(self):
        m = TESTED.match(self.first_line)
        return m.group(1) if m else None


def code_blocks(paths=None):
    blocks = []
    for path in paths or DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"^```([a-z]*)\n(.*?)^```", text, re.M | re.S):
            line = text.count("\n", 0, m.start()) + 1
            blocks.append(Block(path, line, m.group(1), m.group(2)))
    return blocks


def shell_blocks(paths=None):
    return [b for b in code_blocks(paths) if b.lang in ("sh", "bash", "shell")]


def tested_block(name):
    found = [b for b in shell_blocks() if b.tested_name == name]
    if len(found) != 1:
        raise LookupError(f"{len(found)} doc blocks marked '# tested: {name}'")
    return found[0]


def logical_lines(text):
    """Shell lines with continuations joined, comments and blanks dropped.
    Heredoc bodies are dropped too."""
    lines, current, heredoc = [], "", None
    for raw in text.splitlines():
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        m = re.search(r"<<-?\s*'?\"?(\w+)", current)
        if m:
            heredoc = m.group(1)
        lines.append(current.strip())
        current = ""
    return lines


def run_block(block, cwd, env):
    """Runs a doc block with bash -e in cwd; returns the environment it
    leaves (so `export` lines take effect for the caller)."""
    script = f"set -euo pipefail\n{{\n{block.text}\n}} >&2\nenv -0\n"
    out = subprocess.run(["/bin/bash", "-c", script], cwd=cwd, env=env,
                         capture_output=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(
            f"{block.path}:{block.line} block failed "
            f"({out.returncode}): {out.stderr.decode(errors='replace')}")
    result = {}
    for item in out.stdout.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep and key and "\n" not in key:
            result[key] = value
    return result


# --- for the tests ------------------------------------------------------------

def scratch_secrets(tmp):
    """The files compose's secrets name, empty, under tmp/secrets."""
    secrets = Path(tmp) / "secrets"
    secrets.mkdir(exist_ok=True)
    for name in ("admin.key", "worker.key", "grafana-admin.password",
                 "scheduler.crt", "scheduler.key", "ca.crt"):
        (secrets / name).touch()
    return secrets


class FlagChecker:
    """Checks a command line's flags against the real binary's --help."""

    def __init__(self, test):
        self.test = test
        self.cache = {}

    def flags(self, binary):
        if binary not in self.cache:
            path = Path(BIN) / binary
            self.test.assertTrue(path.exists(), f"{path} not built")
            self.cache[binary] = absl_flags(path)
            self.test.assertTrue(self.cache[binary], f"{binary}: no flags")
        return self.cache[binary]

    def check(self, where, argv):
        if not argv or Path(argv[0]).name not in ABSL_BINARIES:
            return
        known = self.flags(Path(argv[0]).name)
        for arg in argv[1:]:
            name = flag_name(arg)
            self.test.assertIsNotNone(name, f"{where}: {arg!r} is not a flag")
            self.test.assertIn(
                name, known, f"{where}: {argv[0]} has no flag --{name}")


def main():
    """unittest.main() for a test file run as
    `python3 FILE --bin BUILD/bin [unittest args]`."""
    global BIN
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    args, rest = parser.parse_known_args()
    BIN = args.bin
    unittest.main(module="__main__", argv=[sys.argv[0]] + rest, verbosity=2)
