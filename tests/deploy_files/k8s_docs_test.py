"""Static checks of deploy/k8s/ and of the deployment docs' commands.

The manifests (and, when kubectl is installed, the kustomize overlays as
rendered offline): kinds and names, the scheduler StatefulSet with its own
volume, the ReadWriteMany shared storage, GPU requests, every ConfigMap
and Secret they use (made in the manifests or by a `kubectl create secret`
in the docs), flags against the real binaries (--bin), ports across flags,
containers, probes, Services and Prometheus annotations. The docs: every
shell block is either run here (`# tested: NAME`) or a docker/kubectl
command marked `# not exercised here`; every ftunectl command they show
exists with those flags.

  /usr/bin/python3 k8s_docs_test.py --bin BUILD/bin [unittest args]
"""

import os
import re
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

import deploy_files as df


class K8sManifestsTest(unittest.TestCase):
    """deploy/k8s/: kinds, storage, GPUs, references, ports, flags."""

    @classmethod
    def setUpClass(cls):
        cls.docs = df.k8s_docs()
        cls.rendered = {}
        for overlay in ("base", "tls"):
            docs = df.kustomize(df.K8S_DIR / overlay)
            if docs is not None:
                cls.rendered[overlay] = docs

    def all_sets(self):
        """(label, docs) for the raw files and every rendered overlay."""
        sets = [("files", [d for _, d in self.docs])]
        sets += [(f"kustomize {k}", v) for k, v in self.rendered.items()]
        return sets

    def by_kind(self, docs, kind):
        return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}

    def test_documents_are_well_formed(self):
        self.assertTrue(self.docs)
        for path, doc in self.docs:
            with self.subTest(file=path.name, doc=doc.get("kind")):
                for key in ("apiVersion", "kind", "metadata"):
                    self.assertIn(key, doc)
                self.assertTrue(doc["metadata"].get("name"))
                if doc["kind"] != "Namespace":
                    self.assertEqual(doc["metadata"].get("namespace"), "ftune")

    def test_kustomizations_list_existing_files(self):
        for kfile in df.K8S_DIR.rglob("kustomization.yaml"):
            with open(kfile, encoding="utf-8") as f:
                k = yaml.safe_load(f)
            for res in k.get("resources", []):
                self.assertTrue((kfile.parent / res).exists(), res)
        if not self.rendered:
            print("note: kubectl not found; overlays not rendered",
                  file=sys.stderr)

    def test_scheduler_is_a_statefulset_with_its_own_volume(self):
        for label, docs in self.all_sets():
            sts = self.by_kind(docs, "StatefulSet")["ftune-scheduler"]
            self.assertEqual(sts["spec"]["replicas"], 1, label)
            claims = sts["spec"]["volumeClaimTemplates"]
            self.assertTrue(claims, label)
            mounts = {m["name"]: m["mountPath"] for m in
                      sts["spec"]["template"]["spec"]["containers"][0]
                      ["volumeMounts"]}
            args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
            db = df.flag_value(args, "db")
            self.assertEqual(str(Path(db).parent),
                             mounts[claims[0]["metadata"]["name"]], label)
            headless = self.by_kind(docs, "Service")[sts["spec"]["serviceName"]]
            self.assertEqual(headless["spec"]["clusterIP"], "None")

    def test_shared_storage_is_read_write_many(self):
        for label, docs in self.all_sets():
            claims = self.by_kind(docs, "PersistentVolumeClaim")
            self.assertIn("ReadWriteMany",
                          claims["ftune-storage"]["spec"]["accessModes"])
            for doc in docs:
                spec = df.pod_spec(doc)
                for vol in (spec or {}).get("volumes", []):
                    pvc = vol.get("persistentVolumeClaim")
                    if pvc:
                        self.assertIn(pvc["claimName"], claims, label)

    def test_gpu_worker_requests_gpus(self):
        for label, docs in self.all_sets():
            worker = self.by_kind(docs, "Deployment")["ftune-worker-gpu"]
            c = worker["spec"]["template"]["spec"]["containers"][0]
            self.assertGreaterEqual(int(c["resources"]["limits"]
                                        ["nvidia.com/gpu"]), 1, label)
            self.assertIn("--gpus=auto", c["args"])

    def test_flags_exist_in_the_binaries(self):
        checker = df.FlagChecker(self)
        for label, docs in self.all_sets():
            for doc in docs:
                for c in (df.pod_spec(doc) or {}).get("containers", []):
                    checker.check(f"{label} {doc['metadata']['name']}",
                                  list(c.get("command", [])) +
                                  list(c.get("args", [])))

    def test_files_named_by_flags_are_mounted(self):
        """Every --*_file/--config/--db/--storage_root path lies under a
        mount, and a file from a ConfigMap or Secret is one of its keys."""
        secret_keys = DocsTest.documented_secrets()
        for label, docs in self.all_sets():
            configmaps = self.by_kind(docs, "ConfigMap")
            for doc in docs:
                spec = df.pod_spec(doc)
                if not spec:
                    continue
                volumes = {v["name"]: v for v in spec.get("volumes", [])}
                if doc["kind"] == "StatefulSet":
                    for claim in doc["spec"].get("volumeClaimTemplates", []):
                        volumes[claim["metadata"]["name"]] = {"pvc": True}
                for c in spec["containers"]:
                    mounts = {m["mountPath"]: m["name"]
                              for m in c.get("volumeMounts", [])}
                    for arg in c.get("args", []):
                        name = df.flag_name(arg)
                        if not name or not (
                                name.endswith("_file") or name in
                                ("config", "db", "storage_root")):
                            continue
                        path = Path(arg.split("=", 1)[1])
                        where = f"{label} {doc['metadata']['name']} {arg}"
                        mount = [m for m in mounts
                                 if path == Path(m) or Path(m) in path.parents]
                        self.assertTrue(mount, f"{where}: not mounted")
                        vol = volumes[mounts[mount[0]]]
                        self.assertIn(mounts[mount[0]], volumes, where)
                        rel = str(path.relative_to(mount[0]))
                        files = self.volume_files(vol, configmaps, secret_keys)
                        if files is not None:
                            self.assertIn(rel, files, where)

    @staticmethod
    def volume_files(vol, configmaps, secret_keys):
        """File names a ConfigMap/Secret volume shows, None for others."""
        def from_source(kind, src):
            if src.get("items"):
                return {i["path"] for i in src["items"]}
            if kind == "configMap":
                return set(configmaps[src["name"]]["data"])
            return set(secret_keys[src.get("secretName", src.get("name"))])

        if "configMap" in vol:
            return from_source("configMap", vol["configMap"])
        if "secret" in vol:
            return from_source("secret", vol["secret"])
        if "projected" in vol:
            files = set()
            for src in vol["projected"]["sources"]:
                kind = next(iter(src))
                files |= from_source(kind, src[kind])
            return files
        return None

    def test_configmaps_and_secrets_exist(self):
        secret_keys = DocsTest.documented_secrets()
        for label, docs in self.all_sets():
            configmaps = self.by_kind(docs, "ConfigMap")
            secrets = {**{n: set(d.get("data", {}) or {}) | set(
                d.get("stringData", {}) or {})
                for n, d in self.by_kind(docs, "Secret").items()},
                **secret_keys}
            for doc in docs:
                spec = df.pod_spec(doc)
                for vol in (spec or {}).get("volumes", []):
                    sources = [vol] + [
                        s for s in vol.get("projected", {}).get("sources", [])]
                    for src in sources:
                        if "configMap" in src:
                            cm = src["configMap"]["name"]
                            self.assertIn(cm, configmaps, label)
                            for item in src["configMap"].get("items", []):
                                self.assertIn(item["key"],
                                              configmaps[cm]["data"])
                        if "secret" in src:
                            name = (src["secret"].get("secretName")
                                    or src["secret"].get("name"))
                            self.assertIn(name, secrets,
                                          f"{label}: Secret {name} is "
                                          "neither a manifest nor created "
                                          "in the docs")
                            for item in src["secret"].get("items", []):
                                self.assertIn(item["key"], secrets[name])

    def test_ports_agree(self):
        for label, docs in self.all_sets():
            services = self.by_kind(docs, "Service")
            pods = [d for d in docs if df.pod_spec(d)]
            for doc in pods:
                spec, meta = df.pod_spec(doc), df.pod_metadata(doc)
                for c in spec["containers"]:
                    named = {p["name"]: p["containerPort"]
                             for p in c.get("ports", [])}
                    args = c.get("args", [])
                    for flag, port_name in (("grpc_address", "grpc"),
                                            ("metrics_address", "metrics")):
                        value = df.flag_value(args, flag)
                        if value is None:
                            continue
                        self.assertTrue(value.startswith("0.0.0.0:"), value)
                        self.assertEqual(named.get(port_name),
                                         df.port_of(value), f"{label} {flag}")
                    for probe in ("startupProbe", "readinessProbe",
                                  "livenessProbe"):
                        if probe in c:
                            self.assertIn(c[probe]["httpGet"]["port"], named)
                    ann = meta.get("annotations", {})
                    if "prometheus.io/port" in ann:
                        self.assertEqual(int(ann["prometheus.io/port"]),
                                         named["metrics"], label)
                        self.assertEqual(ann["prometheus.io/path"], "/metrics")
                    dial = df.flag_value(args, "scheduler")
                    if dial:
                        host, port = dial.rsplit(":", 1)
                        self.assertIn(host, services, f"{label}: {dial}")
                        self.assertIn(int(port), [
                            p["port"] for p in services[host]["spec"]["ports"]])
            for name, svc in services.items():
                selected = [d for d in pods if all(
                    df.pod_metadata(d)["labels"].get(k) == v
                    for k, v in svc["spec"]["selector"].items())]
                self.assertTrue(selected, f"Service {name} selects no pod")
                for port in svc["spec"]["ports"]:
                    for d in selected:
                        named = {p["name"]: p["containerPort"]
                                 for c in df.pod_spec(d)["containers"]
                                 for p in c.get("ports", [])}
                        self.assertEqual(named.get(port["targetPort"]),
                                         port["port"], f"Service {name}")

    def test_servicemonitor_ports_exist(self):
        docs = [d for _, d in self.docs]
        services = self.by_kind(docs, "Service")
        for monitor in self.by_kind(docs, "ServiceMonitor").values():
            selector = monitor["spec"]["selector"]["matchLabels"]
            selected = [s for s in services.values() if all(
                s["metadata"]["labels"].get(k) == v
                for k, v in selector.items())]
            for endpoint in monitor["spec"]["endpoints"]:
                with_port = [s for s in selected if endpoint["port"] in
                             [p["name"] for p in s["spec"]["ports"]]]
                self.assertGreaterEqual(len(with_port), 2,
                                        "scheduler and workers")


class DocsTest(unittest.TestCase):
    """Every shell block of the deployment docs is either run by these
    tests or marked as a docker/kubectl command not exercised here."""

    RUN_BY_TESTS = {"secrets", "models", "tls", "compose-config",
                    "k8s-overlay"}

    @staticmethod
    def documented_secrets():
        """{secret name: keys} created by `kubectl create secret` in docs."""
        secrets = {}
        for block in df.shell_blocks():
            for line in df.logical_lines(block.text):
                m = re.search(r"kubectl (?:-n \S+ )?create secret "
                              r"(generic|tls) (\S+)(.*)", line)
                if not m:
                    continue
                if m.group(1) == "tls":
                    keys = {"tls.crt", "tls.key"}
                else:
                    keys = set(re.findall(r"--from-file=([^=\s]+)=",
                                          m.group(3)))
                secrets[m.group(2)] = keys
        return secrets

    def test_every_block_is_marked(self):
        blocks = df.shell_blocks()
        self.assertTrue(blocks)
        for block in blocks:
            where = f"{block.path.name}:{block.line}"
            name = block.tested_name
            if name:
                self.assertIn(name, self.RUN_BY_TESTS, where)
                continue
            self.assertRegex(block.first_line, df.NOT_EXERCISED, where)
            for line in df.logical_lines(block.text):
                words = line.split()
                while words and re.match(r"^[A-Z_]+=", words[0]):
                    words.pop(0)
                self.assertTrue(
                    words and (words[0] in ("docker", "docker-compose",
                                            "kubectl")
                               or words[0] == "export"),
                    f"{where}: not a docker/kubectl command: {line}")

    def test_tested_blocks_exist(self):
        for name in self.RUN_BY_TESTS:
            df.tested_block(name)

    def test_compose_config_block(self):
        block = df.tested_block("compose-config")
        with tempfile.TemporaryDirectory() as tmp:
            env = df.compose_env(FTUNE_SECRETS_DIR=df.scratch_secrets(tmp))
            df.run_block(block, cwd=df.REPO, env=env)

    def test_k8s_overlay_block(self):
        """The docs' site overlay renders: its config replaces the base's
        ConfigMap (under a hashed name the StatefulSet follows), and its
        images replace the base's."""
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            model = home / "models/Llama-3.2-1B-Instruct"
            model.mkdir(parents=True)
            (model / "config.json").write_text("{}")
            (Path(tmp) / "deploy").symlink_to(df.REPO / "deploy")
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("FTUNE_")}
            env["HOME"] = str(home)
            for name in ("models", "k8s-overlay"):
                env = df.run_block(df.tested_block(name), cwd=tmp, env=env)
            docs = df.kustomize(Path(tmp) / "local/k8s")
            if docs is None:
                self.skipTest("kubectl not found")
            cms = [d for d in docs if d["kind"] == "ConfigMap"]
            self.assertEqual(len(cms), 1)
            self.assertIn("llama-3.2-1b", cms[0]["data"]["scheduler.json"])
            sts = [d for d in docs if d["kind"] == "StatefulSet"][0]
            pod = sts["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            self.assertEqual(volumes["config"]["configMap"]["name"],
                             cms[0]["metadata"]["name"])
            for doc in docs:
                for c in (df.pod_spec(doc) or {}).get("containers", []):
                    self.assertTrue(c["image"].startswith(
                        "registry.example.com/ftune/"), c["image"])

    def test_ftunectl_commands_exist(self):
        ftunectl = Path(df.BIN) / "ftunectl"
        _, global_flags = df.ftunectl_help(ftunectl)
        self.assertIn("api-key-file", global_flags)
        for block in df.code_blocks():
            for line in df.logical_lines(block.text):
                words = line.split()
                if "ftunectl" not in words:
                    continue
                where = f"{block.path.name}:{block.line}: {line}"
                words = words[words.index("ftunectl") + 1:]
                cut = [i for i, w in enumerate(words)
                       if w in ("|", ">", "&&", ";", "2>&1")]
                words = words[:cut[0]] if cut else words
                i, command = 0, []
                while i < len(words) and len(command) < 2:
                    w = words[i]
                    if w.startswith("--"):
                        name = w[2:].split("=")[0]
                        self.assertIn(name, global_flags, where)
                        i += 1 if "=" in w or not global_flags[name] else 2
                    else:
                        command.append(w)
                        i += 1
                if command == ["status"] or command[:1] == ["status"]:
                    command = ["status"]
                rc, flags = df.ftunectl_help(ftunectl, *command)
                self.assertEqual(rc, 0, f"{where}: no such command")
                for w in words[i:]:
                    if w.startswith("--"):
                        self.assertIn(w[2:].split("=")[0],
                                      {**flags, **global_flags}, where)

    def test_absl_flags_in_docs_exist(self):
        checker = df.FlagChecker(self)
        for block in df.code_blocks():
            for line in df.logical_lines(block.text):
                words = line.split()
                for i, word in enumerate(words):
                    # The binary as a command, not an object's name
                    # (`kubectl scale statefulset ftune-scheduler`).
                    if Path(word).name not in df.ABSL_BINARIES or not (
                            i == 0 or words[i - 1] == "--" or "/" in word):
                        continue
                    flags = []
                    for w in words[i + 1:]:
                        if w in ("|", "&&", ";", ">"):
                            break
                        if w.startswith("--"):
                            flags.append(w)
                    checker.check(f"{block.path.name}:{block.line}",
                                  [Path(word).name] + flags)


if __name__ == "__main__":
    df.main()
