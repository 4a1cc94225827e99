"""Static checks of docker-compose.yml and deploy/docker/.

No Docker engine runs here, so this checks what can be checked without
one: `docker-compose config` accepts every combination of files and
profiles, yamllint passes (compose and Kubernetes files), every path the
compose files and Dockerfiles name exists, every flag a command passes is
one the real binary (--bin) lists, ports agree across flags, exposed ports,
health checks and Prometheus/Grafana targets, and the Debian images install
a package for every library the binaries link. The images are never built.

  /usr/bin/python3 compose_files_test.py --bin BUILD/bin [unittest args]
"""

import fnmatch
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

import deploy_files as df

# The shared libraries debian:12-slim itself holds (essential packages).
SLIM_BASE = {"libc6", "libgcc-s1", "libstdc++6"}
# Runtimes a sanitizer build (build-sanitize/) links; images are built in
# Release, so these never reach one.
SANITIZER_RUNTIMES = {"libasan8", "libubsan1", "liblsan0", "libtsan2"}
# Never in a final image stage.
BUILD_TOOLS = {"build-essential", "cmake", "ninja-build", "g++", "gcc",
               "make", "curl", "wget", "unzip", "git", "pkg-config"}



class ComposeConfigTest(unittest.TestCase):
    """docker-compose 1.29 validates every variant without an engine."""

    VARIANTS = [
        ((df.COMPOSE_FILE,), ()),
        ((df.COMPOSE_FILE,), ("cpu",)),
        ((df.COMPOSE_FILE,), ("gpu",)),
        ((df.COMPOSE_FILE, df.COMPOSE_TLS), ("cpu",)),
        ((df.COMPOSE_FILE, df.COMPOSE_TLS), ("gpu",)),
        ((df.COMPOSE_FILE, df.COMPOSE_NFS), ("gpu",)),
    ]

    def test_config_is_valid(self):
        with tempfile.TemporaryDirectory() as tmp:
            env = df.compose_env(FTUNE_SECRETS_DIR=df.scratch_secrets(tmp),
                                 FTUNE_NFS_SERVER="nfs.example")
            for files, profiles in self.VARIANTS:
                cmd = df.compose_cmd(files, profiles) + ["config", "-q"]
                with self.subTest(cmd=" ".join(cmd)):
                    out = subprocess.run(cmd, cwd=df.REPO, env=env,
                                         capture_output=True, text=True,
                                         timeout=60, check=False)
                    self.assertEqual(out.returncode, 0, out.stderr)

    def test_nfs_needs_its_server(self):
        cmd = df.compose_cmd((df.COMPOSE_FILE, df.COMPOSE_NFS)) + ["config"]
        out = subprocess.run(cmd, cwd=df.REPO, env=df.compose_env(),
                             capture_output=True, text=True, timeout=60,
                             check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("FTUNE_NFS_SERVER", out.stderr)

    def test_profiles_choose_the_worker(self):
        config = df.compose_config()
        self.assertEqual(
            set(df.active_services(config, ["cpu"])) - {"worker-cpu"},
            set(df.active_services(config, [])))
        self.assertIn("worker", df.active_services(config, ["gpu"]))
        self.assertNotIn("worker", df.active_services(config, ["cpu"]))
        self.assertNotIn("worker-cpu", df.active_services(config, ["gpu"]))

    def test_gpu_worker_reserves_gpus(self):
        worker = df.compose_config()["services"]["worker"]
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        self.assertTrue(any("gpu" in d.get("capabilities", [])
                            for d in devices), devices)


class YamlLintTest(unittest.TestCase):
    def test_yamllint(self):
        files = [df.COMPOSE_FILE, df.COMPOSE_TLS, df.COMPOSE_NFS,
                 *sorted(df.K8S_DIR.rglob("*.yaml"))]
        out = subprocess.run(
            ["yamllint", "--strict", "-d", "default", *map(str, files)],
            capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


class ComposeReferencesTest(unittest.TestCase):
    """Paths, flags and ports named in the compose files."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        env = df.compose_env(FTUNE_SECRETS_DIR=df.scratch_secrets(cls.tmp.name))
        cls.config = df.compose_config(env=env)
        cls.tls = df.compose_config((df.COMPOSE_FILE, df.COMPOSE_TLS),
                                    env=env)
        with open(df.REPO / "deploy/prometheus/prometheus.yml",
                  encoding="utf-8") as f:
            cls.prometheus = yaml.safe_load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_build_contexts_dockerfiles_and_targets_exist(self):
        for config in (self.config, self.tls):
            for name, svc in config["services"].items():
                build = svc.get("build")
                if not build:
                    continue
                context = Path(build["context"])
                dockerfile = context / build.get("dockerfile", "Dockerfile")
                self.assertTrue(context.is_dir(), name)
                self.assertTrue(dockerfile.is_file(), f"{name}: {dockerfile}")
                stages = {s.name for s in df.parse_dockerfile(dockerfile)}
                self.assertIn(build["target"], stages, name)

    def test_bind_mounts_exist_or_are_documented(self):
        docs = "\n".join(p.read_text(encoding="utf-8") for p in df.DOCS)
        for name, svc in self.config["services"].items():
            for volume in svc.get("volumes", []):
                src, dst, _ = df.split_volume(volume)
                if not src.startswith("/"):
                    self.assertIn(src, self.config.get("volumes", {}), name)
                    continue
                rel = Path(src).relative_to(df.REPO)
                if rel.parts[0] == df.LOCAL_DIR:
                    # Operator-made: the docs say how to make it.
                    self.assertIn(str(rel), docs, f"{name}: {rel}")
                else:
                    self.assertTrue(Path(src).exists(), f"{name}: {src}")

    def test_secrets_are_files_under_the_secrets_dir(self):
        secrets_dir = Path(self.tmp.name) / "secrets"
        for config in (self.config, self.tls):
            for name, secret in config["secrets"].items():
                self.assertEqual(Path(secret["file"]).parent, secrets_dir,
                                 name)
        raw = df.compose_raw()
        for name, secret in raw["secrets"].items():
            self.assertRegex(secret["file"],
                             r"^\$\{FTUNE_SECRETS_DIR:-\./local/secrets\}/",
                             name)

    def test_flags_exist_in_the_binaries(self):
        checker = df.FlagChecker(self)
        for label, config in (("docker-compose.yml", self.config),
                              ("compose.tls.yml", self.tls)):
            for name, svc in config["services"].items():
                checker.check(f"{label} {name}",
                              df.command_list(svc.get("command")))

    def test_ports_agree(self):
        for config in (self.config, self.tls):
            services = config["services"]
            for name in ("scheduler", "worker", "worker-cpu"):
                svc = services[name]
                argv = df.command_list(svc["command"])
                ports = df.container_ports(svc)
                listen = {df.port_of(v) for v in
                          (df.flag_value(argv, "grpc_address"),
                           df.flag_value(argv, "metrics_address")) if v}
                self.assertEqual(ports, listen, name)
                for arg in ("grpc_address", "metrics_address"):
                    value = df.flag_value(argv, arg)
                    if value:
                        self.assertTrue(value.startswith("0.0.0.0:"),
                                        f"{name} --{arg}={value}")
                health = svc["healthcheck"]["test"]
                self.assertEqual(health[:2], ["CMD", "ftune-healthcheck"])
                self.assertEqual(
                    health[2],
                    f"127.0.0.1:{df.port_of(df.flag_value(argv, 'metrics_address'))}",
                    name)
            # Workers dial the scheduler's gRPC port by service name.
            sched_grpc = df.port_of(df.flag_value(
                df.command_list(services["scheduler"]["command"]),
                "grpc_address"))
            for name in ("worker", "worker-cpu"):
                dial = df.flag_value(df.command_list(services[name]["command"]),
                                     "scheduler")
                self.assertEqual(dial, f"scheduler:{sched_grpc}", name)

    def test_prometheus_targets_are_metrics_ports(self):
        """Each scrape target is HOST:PORT with HOST a service (or a network
        alias of one: worker-cpu answers to `worker`) whose
        --metrics_address listens on PORT."""
        services = self.config["services"]
        by_host = {}
        for name, svc in services.items():
            by_host.setdefault(name, []).append(name)
            for net in (svc.get("networks") or {}).values():
                for alias in (net or {}).get("aliases", []):
                    by_host.setdefault(alias, []).append(name)
        targets = [t for job in self.prometheus["scrape_configs"]
                   for sc in job.get("static_configs", [])
                   for t in sc["targets"]]
        self.assertTrue(targets)
        for target in targets:
            host, port = target.rsplit(":", 1)
            self.assertIn(host, by_host, target)
            for name in by_host[host]:
                metrics = df.flag_value(
                    df.command_list(services[name]["command"]),
                    "metrics_address")
                self.assertIsNotNone(metrics, f"{target} -> {name}")
                self.assertEqual(df.port_of(metrics), int(port),
                                 f"{target} -> {name}")

    def test_prometheus_and_grafana_mounts(self):
        prom = self.config["services"]["prometheus"]
        mounts = {df.split_volume(v)[1]: df.split_volume(v)[0]
                  for v in prom["volumes"]}
        config_arg = [a for a in prom["command"]
                      if a.startswith("--config.file=")][0].split("=", 1)[1]
        config_dir = str(Path(config_arg).parent)
        self.assertIn(config_dir, mounts)
        host_dir = Path(mounts[config_dir])
        self.assertTrue((host_dir / Path(config_arg).name).is_file())
        for rule_file in self.prometheus.get("rule_files", []):
            self.assertTrue((host_dir / rule_file).is_file(), rule_file)

        grafana = self.config["services"]["grafana"]
        mounts = {df.split_volume(v)[1]: df.split_volume(v)[0]
                  for v in grafana["volumes"]}
        provisioning = Path(mounts["/etc/grafana/provisioning"])
        self.assertTrue((provisioning / "datasources").is_dir())
        with open(provisioning / "dashboards/dashboards.yml",
                  encoding="utf-8") as f:
            providers = yaml.safe_load(f)["providers"]
        for provider in providers:
            path = provider["options"]["path"]
            self.assertIn(path, mounts, "dashboards path not mounted")
            self.assertTrue(list(Path(mounts[path]).glob("*.json")))
        with open(provisioning / "datasources/datasource.yml",
                  encoding="utf-8") as f:
            sources = yaml.safe_load(f)["datasources"]
        prom_port = df.container_ports(self.config["services"]["prometheus"])
        for source in sources:
            m = re.match(r"http://([^:/]+):(\d+)", source["url"])
            self.assertEqual(m.group(1), "prometheus")
            self.assertIn(int(m.group(2)), prom_port)
        env = grafana["environment"]
        password = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]
        self.assertEqual(password, "/run/secrets/grafana_admin_password")

    def test_images_match_k8s(self):
        images = {svc["image"].split(":")[0]
                  for svc in self.config["services"].values()
                  if svc.get("build")}
        for path, doc in df.k8s_docs():
            spec = df.pod_spec(doc)
            for c in (spec or {}).get("containers", []):
                self.assertIn(c["image"].split(":")[0], images,
                              f"{path.name}: {c['image']}")


class DockerfileTest(unittest.TestCase):
    """Structure of the Dockerfiles, and the runtime libraries they
    install against what the binaries link (Debian image)."""

    def targets(self):
        out = {}
        config = df.compose_raw()
        for svc in config["services"].values():
            build = svc.get("build")
            if build:
                out.setdefault(build["dockerfile"], set()).add(build["target"])
        return out

    def test_final_stages(self):
        for dockerfile, targets in self.targets().items():
            stages = df.parse_dockerfile(df.REPO / dockerfile)
            names = {s.name for s in stages}
            for target in targets:
                with self.subTest(dockerfile=dockerfile, target=target):
                    chain = df.stage_chain(stages, target)
                    self.assertTrue(chain, target)
                    own = [k for k, _ in chain[0].instructions]
                    self.assertIn("HEALTHCHECK", own)
                    self.assertIn("CMD", own)
                    users = [t for s in chain for k, t in s.instructions
                             if k == "USER"]
                    self.assertTrue(users, "no USER")
                    self.assertNotIn(users[0].split(":")[0], ("root", "0"))
                    for stage in chain:
                        for pkg in df.apt_packages(stage):
                            self.assertFalse(
                                pkg in BUILD_TOOLS or pkg.endswith("-dev"),
                                f"{stage.name} installs {pkg}")
                        for keyword, text in stage.instructions:
                            m = re.search(r"--from=(\S+)", text)
                            if keyword == "COPY" and m:
                                self.assertIn(m.group(1), names)

    def test_copy_sources_exist_and_are_not_dockerignored(self):
        ignore = [l.strip() for l in
                  (df.REPO / ".dockerignore").read_text().splitlines()
                  if l.strip() and not l.startswith("#")]

        def ignored(rel):
            result = False
            for pattern in ignore:
                negate = pattern.startswith("!")
                pattern = pattern.lstrip("!").strip("/")
                parts = Path(rel).parts
                prefixes = ["/".join(parts[:i + 1]) for i in range(len(parts))]
                if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
                    result = not negate
            return result

        needed = ["CMakeLists.txt", "cmake", "common", "proto", "server",
                  "worker", "client", "scripts/build.sh",
                  "deploy/docker/healthcheck.sh"]
        for rel in needed:
            self.assertTrue((df.REPO / rel).exists(), rel)
            self.assertFalse(ignored(rel), f".dockerignore drops {rel}")
        for rel in ("build", "build-deployfiles", ".git", ".cache",
                    "local/secrets/admin.key"):
            self.assertTrue(ignored(rel), f".dockerignore keeps {rel}")
        for dockerfile in df.DOCKERFILES.values():
            for stage in df.parse_dockerfile(dockerfile):
                for keyword, text in stage.instructions:
                    if keyword != "COPY" or "--from=" in text:
                        continue
                    for src in text.split()[:-1]:
                        self.assertTrue((df.REPO / src).exists(), src)
            for path in re.findall(r"(deploy/docker/\S+\.sh|scripts/\S+\.sh)",
                                   dockerfile.read_text()):
                self.assertTrue((df.REPO / path).is_file(), path)

    def test_cmd_flags_and_ports(self):
        checker = df.FlagChecker(self)
        for label, dockerfile in df.DOCKERFILES.items():
            for stage in df.parse_dockerfile(dockerfile):
                kw = dict(stage.instructions)
                if "CMD" not in kw:
                    continue
                argv = df.exec_form(kw["CMD"])
                checker.check(f"{label} {stage.name}", argv)
                exposed = {int(p) for k, t in stage.instructions
                           if k == "EXPOSE" for p in t.split()}
                listen = {df.port_of(v) for v in
                          (df.flag_value(argv, "grpc_address"),
                           df.flag_value(argv, "metrics_address")) if v}
                self.assertEqual(exposed, listen, stage.name)
                health = df.exec_form(kw["HEALTHCHECK"].split("CMD", 1)[1])
                self.assertEqual(
                    df.port_of(health[1]),
                    df.port_of(df.flag_value(argv, "metrics_address")))

    def test_build_packages_come_from_install_deps(self):
        known = df.install_deps_packages()
        stages = df.parse_dockerfile(df.DOCKERFILES["deploy/docker/Dockerfile"])
        build = [s for s in stages if s.name == "build"][0]
        self.assertLessEqual(set(df.apt_packages(build)), known)
        cuda = [s for s in df.parse_dockerfile(
            df.DOCKERFILES["deploy/docker/Dockerfile.cuda"])
            if s.name == "build"][0]
        # The CUDA build needs the same libraries (Ubuntu names them alike),
        # LibTorch from the zip instead of Debian's (and so none of the
        # OpenBLAS that the CPU trainer links, nor Debian's Gloo headers for
        # Debian's LibTorch; docs/distributed.md).
        self.assertLessEqual(
            set(df.apt_packages(build))
            - {"build-essential", "libtorch-dev", "libopenblas-dev",
               "libopenblas0-openmp", "libgloo-dev"},
            set(df.apt_packages(cuda)))

    def test_runtime_packages_cover_linked_libraries(self):
        if not shutil.which("dpkg") or not shutil.which("readelf"):
            self.skipTest("needs dpkg and readelf (Debian)")
        stages = df.parse_dockerfile(df.DOCKERFILES["deploy/docker/Dockerfile"])
        bindir = Path(df.BIN)
        for target in ("scheduler", "worker-cpu"):
            chain = df.stage_chain(stages, target)
            installed = {p for s in chain for p in df.apt_packages(s)}
            files = []
            for stage in chain:
                for keyword, text in stage.instructions:
                    if keyword == "COPY" and "--from=build" in text:
                        files += text.split()[1:-1]
            for path in files:
                name = Path(path).name
                local = (bindir / name if "/bin/" in path
                         else bindir.parent / "lib" / name)
                if name == "ftune-healthcheck":
                    continue
                if not local.exists():
                    print(f"note: {local} not built; its libraries "
                          "are not checked", file=sys.stderr)
                    continue
                with self.subTest(target=target, binary=name):
                    needed = self.packages_needed(local) - SANITIZER_RUNTIMES
                    self.assertLessEqual(needed, installed | SLIM_BASE)
            if target == "worker-cpu":
                self.assertIn("libopenblas0-pthread", installed)
                self.assertIn("libsentencepiece0", installed)

    @staticmethod
    def packages_needed(binary):
        """Debian packages of the libraries `binary` names as NEEDED."""
        needed = re.findall(r"\(NEEDED\).*\[(.+)\]", subprocess.run(
            ["readelf", "-d", str(binary)], capture_output=True, text=True,
            check=True).stdout)
        resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True,
            check=False).stdout, re.M))
        paths = [resolved[lib] for lib in needed
                 if lib in resolved and "/build" not in resolved[lib]]
        candidates = set(paths) | {str(Path(p).resolve()) for p in paths}
        # One dpkg call: "pkg[:arch]: /path" per file a package owns.
        out = subprocess.run(["dpkg", "-S", *sorted(candidates)],
                             capture_output=True, text=True,
                             check=False).stdout
        owner = {}
        for line in out.splitlines():
            pkgs, _, path = line.partition(": ")
            owner[path] = pkgs.split(",")[0].split(":")[0].strip()
        packages = set()
        for path in paths:
            pkg = owner.get(str(Path(path).resolve()), owner.get(path))
            if pkg:
                packages.add(pkg)
        return packages


if __name__ == "__main__":
    df.main()
