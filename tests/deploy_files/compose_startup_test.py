"""docker-compose.yml's start-up sequence, run with plain processes.

No Docker engine runs here. This reads the resolved compose file
(`docker-compose config`), makes the operator's files with the commands
the docs show (blocks marked `# tested: secrets|models|tls`), and starts
the CPU profile's services the way compose would: in depends_on order,
waiting for `service_completed_successfully` and `service_healthy` (with
the service's own health check command). Each service's command runs as
written, with the container's paths (volumes, secrets) rewritten to
directories under a temp dir, `0.0.0.0:PORT` and `<service>:PORT` to
127.0.0.1 and a free port, and the binaries taken from --bin. Then it
checks the worker registered, runs one job through it (stand-in trainer)
to prove both see the same shared storage, and stops everything with
SIGTERM, expecting exit status 0.

  /usr/bin/python3 compose_startup_test.py --bin BUILD/bin [unittest args]
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

import deploy_files as df

# Compose services run here (third-party images are not).
OURS = ("models-init", "scheduler", "worker-cpu")
# The model the docs' "models" block copies from the operator's home.
DOC_MODEL_SOURCE = "models/Llama-3.2-1B-Instruct"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Plan:
    """Maps a compose service's container view onto this machine."""

    def __init__(self, config, tmp):
        self.config = config
        self.tmp = Path(tmp)
        self.ports = {}  # (service, container port) -> local port
        self.aliases = {}
        for name, svc in config["services"].items():
            self.aliases[name] = name
            for net in (svc.get("networks") or {}).values():
                for alias in (net or {}).get("aliases", []):
                    self.aliases.setdefault(alias, name)

    def port(self, service, port):
        key = (service, int(port))
        if key not in self.ports:
            self.ports[key] = free_port()
        return self.ports[key]

    def mounts(self, name):
        """[(container path, host path)], longest container path first."""
        svc = self.config["services"][name]
        out = []
        for volume in svc.get("volumes", []):
            src, dst, _ = df.split_volume(volume)
            if not src.startswith("/"):
                src = self.tmp / "volumes" / src
                Path(src).mkdir(parents=True, exist_ok=True)
            out.append((dst, str(src)))
        for secret in svc.get("secrets", []):
            source = secret["source"]
            target = secret.get("target", source)
            if not target.startswith("/"):
                target = f"/run/secrets/{target}"
            out.append((target, self.config["secrets"][source]["file"]))
        return sorted(out, key=lambda m: -len(m[0]))

    def rewrite(self, name, arg):
        for dst, src in self.mounts(name):
            arg = re.sub(rf"(?<![\w/.-]){re.escape(dst)}(?=$|[/\s:;'\"])",
                         lambda _: src, arg)
        arg = re.sub(r"\b0\.0\.0\.0:(\d+)",
                     lambda m: f"127.0.0.1:{self.port(name, m.group(1))}", arg)
        arg = re.sub(r"\b127\.0\.0\.1:(\d+)\b(?!\d)",
                     lambda m: f"127.0.0.1:{self.port(name, m.group(1))}"
                     if (name, int(m.group(1))) in self.ports else m.group(0),
                     arg)
        for alias, target in self.aliases.items():
            arg = re.sub(rf"(?<![\w.-]){re.escape(alias)}:(\d+)",
                         lambda m, t=target: f"127.0.0.1:{self.port(t, m.group(1))}",
                         arg)
        return arg

    def binary(self, word):
        if word == "ftune-healthcheck":
            return str(df.REPO / "deploy/docker/healthcheck.sh")
        if word.startswith("ftune"):
            return str(Path(df.BIN) / word)
        return word

    def argv(self, name, argv):
        argv = [self.binary(argv[0])] + [self.rewrite(name, a)
                                         for a in argv[1:]]
        if Path(argv[0]).name == "ftune-worker":
            # The trainer is never started by the checks before the job,
            # and the job uses the stand-in (the model is a stand-in too).
            argv.append(f"--trainer={Path(df.BIN) / 'ftune-stand-in-trainer'}")
            argv.append(f"--work_dir={self.tmp / 'worker-scratch'}")
        return argv


class Cluster:
    """The processes of one start-up; stops them on close()."""

    def __init__(self, test, plan):
        self.test, self.plan = test, plan
        self.procs = {}
        self.logs = {}

    def start(self, name):
        svc = self.plan.config["services"][name]
        argv = self.plan.argv(name, df.command_list(svc["command"]))
        log = open(self.plan.tmp / f"{name}.log", "wb")
        self.logs[name] = log
        env = dict(os.environ, TMPDIR=str(self.plan.tmp),
                   FTUNE_STAND_IN_STEP_MS="20")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=log,
                                            env=env)
        return argv

    def healthy(self, name, timeout):
        svc = self.plan.config["services"][name]
        test = svc["healthcheck"]["test"]
        self.test.assertEqual(test[0], "CMD")
        argv = self.plan.argv(name, test[1:])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_running(name)
            if subprocess.run(argv, capture_output=True, timeout=10,
                              check=False).returncode == 0:
                return
            time.sleep(0.2)
        self.test.fail(f"{name}: {argv} never succeeded\n{self.log(name)}")

    def wait_exit(self, name, timeout):
        try:
            return self.procs[name].wait(timeout)
        except subprocess.TimeoutExpired:
            self.test.fail(f"{name} still running after {timeout}s\n"
                           f"{self.log(name)}")

    def assert_running(self, name):
        if self.procs[name].poll() is not None:
            self.test.fail(f"{name} exited with {self.procs[name].returncode}"
                           f"\n{self.log(name)}")

    def log(self, name):
        self.logs[name].flush()
        return (self.plan.tmp / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self, name, timeout=20):
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return self.wait_exit(name, timeout)

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in self.logs.values():
            log.close()


class ComposeStartupTest(unittest.TestCase):

    def operator_files(self, tmp, blocks):
        """Runs the docs' blocks in tmp as an operator would in the
        repository root; returns the compose environment they leave."""
        home = Path(tmp) / "home"
        model = home / DOC_MODEL_SOURCE
        model.mkdir(parents=True)
        (model / "config.json").write_text(
            '{"architectures": ["LlamaForCausalLM"], "vocab_size": 256, '
            '"hidden_size": 64, "intermediate_size": 128, '
            '"num_hidden_layers": 2, "num_attention_heads": 4, '
            '"max_position_embeddings": 512}')
        env = dict(os.environ, HOME=str(home))
        env = {k: v for k, v in env.items() if not k.startswith("FTUNE_")}
        for name in blocks:
            env = df.run_block(df.tested_block(name), cwd=tmp, env=env)
        # Relative to where the blocks ran, as compose would resolve the
        # defaults relative to the repository root.
        local = Path(tmp) / df.LOCAL_DIR
        overrides = {k: v for k, v in env.items() if k.startswith("FTUNE_")}
        overrides.setdefault("FTUNE_SECRETS_DIR", str(local / "secrets"))
        overrides.setdefault("FTUNE_MODELS_DIR", str(local / "models"))
        for key, value in overrides.items():
            if not value.startswith("/"):
                overrides[key] = str(Path(tmp) / value)
        return df.compose_env(**overrides)

    def run_sequence(self, files, blocks, tls_ca=None):
        with tempfile.TemporaryDirectory(prefix="ftune-compose-") as tmp:
            env = self.operator_files(tmp, blocks)
            config = df.compose_config(files, ("cpu",), env=env)
            for name, secret in config["secrets"].items():
                self.assertTrue(Path(secret["file"]).is_file(),
                                f"the docs make no {secret['file']}")
            services = df.active_services(config, ["cpu"])
            order = [s for s in df.start_order(services) if s in OURS]
            self.assertEqual(order, list(OURS))
            plan = Plan(config, tmp)
            cluster = Cluster(self, plan)
            try:
                self.start_all(cluster, services, order)
                self.check_cluster(cluster, plan, env, tls_ca)
                for name in ("worker-cpu", "scheduler"):
                    self.assertEqual(cluster.stop(name), 0, cluster.log(name))
            finally:
                cluster.close()

    def start_all(self, cluster, services, order):
        for name in order:
            for dep, cond in (services[name].get("depends_on") or {}).items():
                condition = cond.get("condition", "service_started")
                if condition == "service_completed_successfully":
                    self.assertEqual(cluster.wait_exit(dep, 30), 0,
                                     cluster.log(dep))
                elif condition == "service_healthy":
                    cluster.healthy(dep, 20)
            cluster.start(name)
        cluster.healthy("worker-cpu", 20)

    def check_cluster(self, cluster, plan, env, tls_ca):
        config = plan.config
        sched = config["services"]["scheduler"]
        grpc = df.port_of(df.flag_value(df.command_list(sched["command"]),
                                        "grpc_address"))
        metrics = df.port_of(df.flag_value(df.command_list(sched["command"]),
                                           "metrics_address"))
        address = f"127.0.0.1:{plan.port('scheduler', grpc)}"
        admin_key = config["secrets"]["admin_key"]["file"]
        ctl = [str(Path(df.BIN) / "ftunectl"), "--address", address,
               "--api-key-file", admin_key]
        if tls_ca:
            ctl += ["--tls-ca", str(Path(env["FTUNE_SECRETS_DIR"]) / tls_ca)]

        def run(*args):
            out = subprocess.run(ctl + list(args), capture_output=True,
                                 text=True, timeout=30, check=False)
            self.assertEqual(out.returncode, 0,
                             f"ftunectl {' '.join(args)}: {out.stderr}")
            return out.stdout.strip()

        # The worker registered (ftunectl and the scheduler's metric).
        deadline = time.monotonic() + 15
        while True:
            workers = json.loads(run("--output", "json", "workers", "list"))
            items = workers.get("workers", workers) \
                if isinstance(workers, dict) else workers
            if items:
                break
            self.assertLess(time.monotonic(), deadline, "no worker")
            time.sleep(0.2)
        url = f"http://127.0.0.1:{plan.port('scheduler', metrics)}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        self.assertRegex(text, r'ftune_workers\{state="active"\} 1\b')

        # The models-init copy is what the scheduler registered.
        models = run("--output", "json", "models", "list")
        self.assertIn("llama-3.2-1b", models)

        # One job: the worker finds the upload where the scheduler put it.
        tenant = run("tenants", "create", "compose-test")
        key = json.loads(run("--output", "json", "keys", "create",
                             "--tenant", tenant))["secret"]
        key_file = plan.tmp / "tenant.key"
        key_file.write_text(key + "\n")
        data = plan.tmp / "train.jsonl"
        data.write_text("".join(
            json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n"
            for i in range(8)))
        ctl[ctl.index("--api-key-file") + 1] = str(key_file)
        file_id = run("files", "upload", str(data))
        job = run("jobs", "create", "--model", "llama-3.2-1b",
                  "--training-file", file_id, "--max-steps", "5",
                  "--gpus", "0", "--cpu-threads", "1",
                  "--checkpoint-every-steps", "5")
        out = subprocess.run(ctl + ["jobs", "watch", job], capture_output=True,
                             text=True, timeout=30, check=False)
        self.assertEqual(out.returncode, 0,
                         out.stdout + out.stderr + cluster.log("worker-cpu"))
        adapter = json.loads(run("--output", "json", "jobs", "get",
                                 job))["adapter"]["path"]
        storage = plan.tmp / "volumes" / "storage"
        self.assertTrue((storage / adapter / "adapter_config.json").is_file())

    def test_cpu_profile(self):
        self.run_sequence((df.COMPOSE_FILE,), ["secrets", "models"])

    def test_cpu_profile_with_tls(self):
        self.run_sequence((df.COMPOSE_FILE, df.COMPOSE_TLS),
                          ["secrets", "models", "tls"], tls_ca="ca.crt")


if __name__ == "__main__":
    df.main()
