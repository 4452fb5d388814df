#!/usr/bin/env python3
"""Consistency of the deployment files with the program they deploy.

    check.py --source DIR --bin BEADS_SCHED [--admin-h FILE] [--image-inspect FILE]

Checks ops/Dockerfile, ops/k8s/*.yaml, ops/terraform/*.tf and the docs in
ops/ against what the binary and the sources say:

- every BEADS_SCHED_* variable they set or name is in the binary's
  configuration table (`beads-sched config --markdown`), and the values
  they set are accepted by `beads-sched config`;
- probe paths and the scrape path are sched/admin.h's ADMIN_PATH_*, and
  every port (container, probes, Service, scrape annotation, EXPOSE) is the
  LISTEN port, which is the binary's default admin port;
- the image's ENTRYPOINT is CMake's install prefix + bin/beads-sched, built
  by ops/build.sh, the script CI builds with;
- every YAML file parses; the kill switch scales to 0; the pod runs as the
  image's user, read-only, with the store on its volume and the secrets as
  files;
- the libraries the binary links come from ops/packages/runtime.txt;
- with --image-inspect FILE (`podman image inspect IMAGE > FILE`): the
  manifests and the module against what the built image declares, not the
  Dockerfile's text: user, exposed port, volume, entrypoint and command,
  stop signal, tag.

Prints one "ok - " or "FAIL - " line per check; exits 1 if any failed.
Uses python3 and PyYAML only.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

PASSES = 0
FAILS = 0


def ok(what):
    global PASSES
    PASSES += 1
    print("ok - " + what)


def fail(what):
    global FAILS
    FAILS += 1
    print("FAIL - " + what)


def check(cond, what, why=""):
    if cond:
        ok(what)
    else:
        fail(what + (": " + why if why else ""))
    return cond


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- what the program says ----

def config_table(binary):
    """{name: default} from `beads-sched config --markdown`."""
    out = subprocess.run([binary, "config", "--markdown"], capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if out.returncode != 0:
        sys.exit("check.py: %s config --markdown failed: %s" % (binary, out.stderr.strip()))
    table = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\|\s*`(BEADS_SCHED_[A-Z0-9_]+)`\s*\|[^|]*\|\s*([^|]*?)\s*\|", line)
        if m:
            table[m.group(1)] = m.group(2).strip("`")
    if not table:
        sys.exit("check.py: no variables in the output of %s config --markdown" % binary)
    return table


def admin_paths(admin_h):
    paths = dict(re.findall(r'#define\s+ADMIN_PATH_([A-Z]+)\s+"([^"]+)"', read(admin_h)))
    for k in ("METRICS", "HEALTHZ", "READYZ"):
        if k not in paths:
            sys.exit("check.py: ADMIN_PATH_%s not defined in %s" % (k, admin_h))
    return paths


def install_destination(cmakelists):
    m = re.search(r"install\s*\(\s*TARGETS\s+beads-sched\s+RUNTIME\s+DESTINATION\s+(\S+?)\s*\)",
                  read(cmakelists))
    return m.group(1) if m else None


def listen_port(value):
    m = re.match(r"^.*:(\d+)$", value or "")
    return int(m.group(1)) if m else None


# ---- Dockerfile ----

def dockerfile_instructions(text):
    """[(INSTRUCTION, arguments)] with continuation lines joined."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def dockerfile_env(instrs):
    env = {}
    for ins, args in instrs:
        if ins == "ENV":
            for tok in args.split():
                k, eq, v = tok.partition("=")
                if eq:
                    env[k] = v.strip('"')
    return env


# ---- Terraform (plain HCL, read with regular expressions) ----

def strip_hcl_comments(text):
    return "\n".join(re.sub(r"(^|\s)(#|//).*$", "", l) for l in text.splitlines())


def hcl_blocks(text, name):
    """Bodies of every `name {` block (brace-matched)."""
    bodies = []
    for m in re.finditer(r"(?<![\w.])" + re.escape(name) + r"\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        bodies.append(text[m.end():i - 1])
    return bodies


def hcl_attr(body, attr):
    m = re.search(r"(?m)^\s*" + re.escape(attr) + r"\s*=\s*(.+?)\s*$", body)
    return m.group(1).strip('"') if m else None


def tf_variable_defaults(text):
    defaults = {}
    for m in re.finditer(r'variable\s+"(\w+)"\s*\{', text):
        body = hcl_blocks(text[m.start():], "variable \"%s\"" % m.group(1))[0]
        d = re.search(r'(?m)^\s*default\s*=\s*("(?:[^"\\]|\\.)*"|[^\s{]+)', body)
        if d:
            defaults[m.group(1)] = json.loads(d.group(1)) if d.group(1).startswith('"') else d.group(1)
    return defaults


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--admin-h")
    ap.add_argument("--image-inspect", metavar="FILE",
                    help="output of `podman image inspect IMAGE`: also check the manifests and the module "
                         "against what the built image declares")
    a = ap.parse_args()
    src = a.source
    ops = os.path.join(src, "ops")
    table = config_table(a.bin)
    paths = admin_paths(a.admin_h or os.path.join(src, "sched", "admin.h"))
    default_port = listen_port(table.get("BEADS_SCHED_LISTEN"))
    check(default_port is not None, "the config table has LISTEN with a default port",
          "LISTEN default %r" % table.get("BEADS_SCHED_LISTEN"))

    def known(names, where):
        unknown = sorted(set(names) - set(table))
        check(not unknown, "%s: every BEADS_SCHED_* variable is in the config table" % where,
              "not in `beads-sched config --markdown`: " + ", ".join(unknown))

    # ---------------- Dockerfile ----------------
    dpath = os.path.join(ops, "Dockerfile")
    dtext = read(dpath)
    instrs = dockerfile_instructions(dtext)
    denv = dockerfile_env(instrs)
    known(denv, "Dockerfile ENV")
    # (-DBEADS_SCHED_... are CMake options, not settings.)
    known(re.findall(r"(?<!-D)BEADS_SCHED_[A-Z0-9_]+", dtext), "Dockerfile text")
    froms = [args for ins, args in instrs if ins == "FROM"]
    check(len(froms) == 3 and froms[0] == "debian:bookworm AS build"
          and froms[1] == "debian:bookworm-slim AS rootfs" and froms[2] == "scratch",
          "Dockerfile: build stage on debian:bookworm, rootfs on debian:bookworm-slim, image on scratch",
          repr(froms))
    check(re.search(r"RUN bash /tmp/rootfs\.sh /rootfs (\d+)\b", dtext) and
          re.search(r"COPY ops/packages/runtime\.txt ops/image/rootfs\.sh /tmp/", dtext) and
          "COPY --from=rootfs /rootfs/ /" in dtext,
          "Dockerfile: the image is the tree ops/image/rootfs.sh assembles")
    runs = [args for ins, args in instrs if ins == "RUN"]
    build_runs = [r for r in runs if "ops/build.sh" in r]
    check(len(build_runs) == 1, "Dockerfile builds with ops/build.sh (the script CI uses)")
    build_run = build_runs[0] if build_runs else ""
    for flag in ("-DBEADS_SCHED_TEST_HOOKS=OFF", "-DBEADS_SCHED_TESTS=OFF"):
        check(flag in build_run.split(), "Dockerfile build: " + flag)
    m = re.search(r"--install\s+(\S+)", build_run)
    prefix = m.group(1) if m else None
    dest = install_destination(os.path.join(src, "CMakeLists.txt"))
    check(dest is not None, "CMakeLists.txt installs beads-sched (install(TARGETS ... DESTINATION))")
    binpath = "%s/%s/beads-sched" % (prefix, dest) if prefix and dest else None
    entry = [json.loads(args) for ins, args in instrs if ins == "ENTRYPOINT"]
    check(len(entry) == 1 and isinstance(entry[0], list),
          "Dockerfile ENTRYPOINT is in exec form (signals reach the daemon)")
    check(entry and entry[0] and entry[0][0] == binpath,
          "Dockerfile ENTRYPOINT is the install prefix + %s/beads-sched" % dest,
          "ENTRYPOINT %r, installed to %r" % (entry[0][0] if entry and entry[0] else None, binpath))
    check(binpath and re.search(r"COPY\s+--from=build\s+%s\s+%s" % (re.escape(binpath), re.escape(binpath)), dtext),
          "Dockerfile copies the installed binary from the build stage")
    cmd = [json.loads(args) for ins, args in instrs if ins == "CMD"]
    check(cmd == [["run"]], 'Dockerfile CMD ["run"]', repr(cmd))
    check(("STOPSIGNAL", "SIGTERM") in instrs, "Dockerfile STOPSIGNAL SIGTERM")
    user = [args for ins, args in instrs if ins == "USER"]
    image_uid = int(user[-1].split(":")[0]) if user and user[-1].split(":")[0].isdigit() else None
    check(image_uid is not None and image_uid != 0, "Dockerfile runs as a numeric non-root USER", repr(user))
    expose = [int(p.split("/")[0]) for ins, args in instrs if ins == "EXPOSE" for p in args.split()]
    check(expose == [default_port], "Dockerfile EXPOSE is the admin port %s" % default_port, repr(expose))
    check(listen_port(denv.get("BEADS_SCHED_LISTEN")) == default_port and
          denv.get("BEADS_SCHED_LISTEN", "").startswith("0.0.0.0:"),
          "Dockerfile LISTEN is 0.0.0.0:%s" % default_port, repr(denv.get("BEADS_SCHED_LISTEN")))
    workdir = [args for ins, args in instrs if ins == "WORKDIR"]
    store = denv.get("BEADS_SCHED_STORE", "")
    check(workdir and os.path.dirname(store) == workdir[-1],
          "Dockerfile STORE lives in the WORKDIR", "%r vs %r" % (store, workdir))
    for lst in ("build.txt", "runtime.txt"):
        check("ops/packages/" + lst in dtext, "Dockerfile installs ops/packages/" + lst)
    check("packages/build.txt" in read(os.path.join(ops, "dev", "setup.sh")),
          "ops/dev/setup.sh installs the same ops/packages/build.txt")
    ci = read(os.path.join(src, ".ci", "run"))
    test_sh = read(os.path.join(ops, "dev", "test.sh"))
    check("ops/dev/test.sh" in ci and test_sh.count("ops/build.sh") >= 2,
          "CI (.ci/run -> ops/dev/test.sh) builds both trees with ops/build.sh")

    # ---------------- Kubernetes manifests ----------------
    kdir = os.path.join(ops, "k8s")
    docs = {}
    for f in sorted(os.listdir(kdir)):
        if not f.endswith((".yaml", ".yml")):
            continue
        try:
            docs[f] = [d for d in yaml.safe_load_all(read(os.path.join(kdir, f))) if d is not None]
            ok("ops/k8s/%s parses" % f)
        except yaml.YAMLError as e:
            fail("ops/k8s/%s parses: %s" % (f, str(e).replace("\n", " ")))
    kust = (docs.get("kustomization.yaml") or [{}])[0]
    res = kust.get("resources", [])
    check(sorted(res) == sorted(f for f in docs if f != "kustomization.yaml"),
          "kustomization.yaml lists every manifest in ops/k8s", repr(res))
    check(kust.get("namespace") == "beads-server", "kustomization.yaml sets namespace beads-server")
    objs = {}
    for f, ds in docs.items():
        for d in ds:
            if f != "kustomization.yaml":
                check("namespace" not in d.get("metadata", {}),
                      "ops/k8s/%s: %s has no namespace of its own" % (f, d.get("kind")))
            objs.setdefault(d.get("kind"), []).append(d)
    cm = (objs.get("ConfigMap") or [{}])[0]
    sts = (objs.get("StatefulSet") or [{}])[0]
    svc = (objs.get("Service") or [{}])[0]
    check(cm and sts and svc, "ops/k8s has a ConfigMap, a StatefulSet and a Service")
    spec = sts.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    ctrs = pod.get("containers", [{}])
    c = ctrs[0]
    kenv = dict(cm.get("data", {}))
    known(kenv, "ops/k8s ConfigMap")
    cenv = {e["name"]: e.get("value") for e in c.get("env", [])}
    known(cenv, "ops/k8s StatefulSet env")
    check([r.get("configMapRef", {}).get("name") for r in c.get("envFrom", [])] == [cm.get("metadata", {}).get("name")],
          "the StatefulSet takes its settings from the ConfigMap (envFrom)")
    # The pod's environment: image ENV, then the ConfigMap, then env.
    podenv = dict(denv)
    podenv.update(kenv)
    podenv.update(cenv)

    lport = listen_port(podenv.get("BEADS_SCHED_LISTEN"))
    check(lport == default_port and podenv.get("BEADS_SCHED_LISTEN", "").startswith("0.0.0.0:"),
          "ops/k8s LISTEN is 0.0.0.0:%s" % default_port, repr(podenv.get("BEADS_SCHED_LISTEN")))
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    check(list(ports.values()) == [lport], "ops/k8s containerPort is the LISTEN port", repr(ports))

    def port_of(p):
        return ports.get(p) if isinstance(p, str) else p

    for probe, key in (("livenessProbe", "HEALTHZ"), ("readinessProbe", "READYZ")):
        hg = c.get(probe, {}).get("httpGet", {})
        check(hg.get("path") == paths[key], "ops/k8s %s path is ADMIN_PATH_%s (%s)" % (probe, key, paths[key]),
              repr(hg.get("path")))
        check(port_of(hg.get("port")) == lport, "ops/k8s %s port is the LISTEN port" % probe, repr(hg.get("port")))
    netpol = (objs.get("NetworkPolicy") or [{}])[0]
    np_ports = [p.get("port") for r in netpol.get("spec", {}).get("ingress", []) for p in r.get("ports", [])]
    check(np_ports == [lport], "ops/k8s NetworkPolicy admits the LISTEN port only", repr(np_ports))
    check(netpol.get("spec", {}).get("podSelector", {}).get("matchLabels") ==
          spec.get("selector", {}).get("matchLabels"),
          "ops/k8s NetworkPolicy selects the StatefulSet's pods")
    ann = spec.get("template", {}).get("metadata", {}).get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true", "ops/k8s scrape annotation")
    check(ann.get("prometheus.io/path") == paths["METRICS"], "ops/k8s scrape path is ADMIN_PATH_METRICS",
          repr(ann.get("prometheus.io/path")))
    check(str(ann.get("prometheus.io/port")) == str(lport), "ops/k8s scrape port is the LISTEN port",
          repr(ann.get("prometheus.io/port")))
    sp = (svc.get("spec", {}).get("ports") or [{}])[0]
    check(sp.get("port") == lport and port_of(sp.get("targetPort")) == lport,
          "ops/k8s Service port and targetPort are the LISTEN port", repr(sp))
    check(svc.get("spec", {}).get("selector") == spec.get("selector", {}).get("matchLabels") and
          spec.get("serviceName") == svc.get("metadata", {}).get("name"),
          "ops/k8s Service selects the pod and governs the StatefulSet")
    check(spec.get("replicas") == 2, "ops/k8s StatefulSet: 2 replicas (one active, one standby)")
    check(spec.get("podManagementPolicy") == "Parallel", "ops/k8s StatefulSet: podManagementPolicy Parallel")
    pdb = (objs.get("PodDisruptionBudget") or [{}])[0]
    check(pdb.get("spec", {}).get("maxUnavailable") == 1 and
          pdb.get("spec", {}).get("selector", {}).get("matchLabels") == spec.get("selector", {}).get("matchLabels"),
          "ops/k8s PodDisruptionBudget: one of the StatefulSet's pods down at most")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    check(bool(anti), "ops/k8s StatefulSet: pod anti-affinity spreads the replicas over nodes")
    check(pod.get("enableServiceLinks") is False,
          "ops/k8s service links off (they would add BEADS_SCHED_-prefixed variables)")
    check(pod.get("automountServiceAccountToken") is False, "ops/k8s no service account token")
    check(int(pod.get("terminationGracePeriodSeconds", 0)) > 10,
          "ops/k8s grace period longer than the daemon's 10 s stop")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == image_uid and psc.get("fsGroup") == image_uid,
          "ops/k8s runs as the image's user %s (runAsNonRoot, fsGroup)" % image_uid, repr(psc))
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "ops/k8s seccomp RuntimeDefault")
    check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
          and csc.get("capabilities", {}).get("drop") == ["ALL"],
          "ops/k8s container: read-only root, no privilege escalation, no capabilities", repr(csc))
    check(all(k in c.get("resources", {}).get(w, {}) for w in ("requests", "limits") for k in ("memory",)),
          "ops/k8s memory request and limit set")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    vcts = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    storedir = os.path.dirname(podenv.get("BEADS_SCHED_STORE", ""))
    store_mounts = [n for n, m in mounts.items() if m["mountPath"] == storedir]
    check(store_mounts and store_mounts[0] in vcts and
          vcts[store_mounts[0]]["spec"]["accessModes"] == ["ReadWriteOnce"],
          "ops/k8s STORE (%s) is on the ReadWriteOnce claim template" % podenv.get("BEADS_SCHED_STORE"))
    check(storedir == os.path.dirname(denv.get("BEADS_SCHED_STORE", "")),
          "ops/k8s STORE is in the image's store directory")
    check(any(m["mountPath"] == "/tmp" for m in mounts.values()), "ops/k8s writable /tmp on the read-only root")
    for var in ("BEADS_SCHED_AGENT_TOKEN_FILE", "BEADS_SCHED_DOLT_PASSWORD_FILE"):
        path = cenv.get(var, "")
        found = False
        for n, m in mounts.items():
            sec = vols.get(n, {}).get("secret")
            if sec and os.path.dirname(path) == m["mountPath"]:
                found = os.path.basename(path) in [i["path"] for i in sec.get("items", [])]
        check(found, "ops/k8s %s is a file from a Secret volume" % var, repr(path))
    check(not re.search(r"mysql://[^/@:]+:[^@]+@", kenv.get("BEADS_SCHED_DOLT_URL", "")),
          "ops/k8s DOLT_URL carries no password")
    check(objs.get("Secret") is None, "ops/k8s holds no Secret values")

    # ---------------- Terraform module ----------------
    tdir = os.path.join(ops, "terraform")
    tf = {f: read(os.path.join(tdir, f)) for f in sorted(os.listdir(tdir)) if f.endswith(".tf")}
    tfall = "\n".join(strip_hcl_comments(t) for t in tf.values())
    known(re.findall(r"BEADS_SCHED_[A-Z0-9_]+", tfall), "ops/terraform")
    check("versions.tf" in tf and re.search(r'source\s*=\s*"hashicorp/kubernetes"', tf["versions.tf"]),
          "ops/terraform pins the kubernetes provider in versions.tf")
    for r in ("kubernetes_stateful_set_v1", "kubernetes_config_map_v1", "kubernetes_service_v1"):
        check(re.search(r'resource\s+"%s"' % r, tfall), "ops/terraform has a %s" % r)
    defaults = tf_variable_defaults(tfall)
    check(defaults.get("enabled") == "true" and re.search(r'variable\s+"enabled"\s*\{[^}]*type\s*=\s*bool', tfall),
          "ops/terraform: bool variable enabled, default true")
    sts_tf = (hcl_blocks(tfall, 'resource "kubernetes_stateful_set_v1" "beads_sched"') or [""])[0]
    check(re.search(r"(?m)^\s*replicas\s*=\s*var\.enabled\s*\?\s*var\.replicas\s*:\s*0\s*$", sts_tf),
          "ops/terraform kill switch: enabled = false scales to 0 replicas")
    check(re.search(r'variable\s+"monitoring"\s*\{[^}]*default\s*=\s*false', tfall),
          "ops/terraform: monitoring is optional, off by default")
    for ref in re.findall(r'file\("\$\{path\.module\}/([^"]+)"\)', tfall):
        check(os.path.isfile(os.path.join(tdir, ref)), "ops/terraform: file %s exists" % ref)
    check(re.search(r'variable\s+"replicas"\s*\{[^}]*default\s*=\s*2', tfall),
          "ops/terraform: replicas default 2")
    check("kubernetes_pod_disruption_budget_v1" in tfall and "pod_anti_affinity" in tfall
          and re.search(r'pod_management_policy\s*=\s*"Parallel"', tfall),
          "ops/terraform: PodDisruptionBudget, anti-affinity, Parallel pod management")
    settings_body = re.search(r"settings\s*=\s*merge\(\{(.*?)\}", tfall, re.S)
    tfenv = {}
    for k, v in re.findall(r"(?m)^\s*(BEADS_SCHED_\w+)\s*=\s*(.+?)\s*$", settings_body.group(1) if settings_body else ""):
        mv = re.match(r"^(?:tostring\()?var\.(\w+)\)?$", v)
        tfenv[k] = str(defaults.get(mv.group(1))) if mv else v.strip('"')
    for e in hcl_blocks(sts_tf, "env"):
        tfenv[hcl_attr(e, "name")] = hcl_attr(e, "value")
    tf_locals = (hcl_blocks(tfall, "locals") or [""])[0]
    store_dir = hcl_attr(tf_locals, "store_dir")
    tfenv = {k: v.replace("${local.store_dir}", store_dir or "") for k, v in tfenv.items()}
    check(tfenv.get("BEADS_SCHED_STORE") == podenv.get("BEADS_SCHED_STORE"),
          "ops/terraform STORE is the manifests' STORE", repr(tfenv.get("BEADS_SCHED_STORE")))
    tport = hcl_attr(tf_locals, "admin_port")
    check(tport == str(lport) and listen_port(tfenv.get("BEADS_SCHED_LISTEN")) == lport,
          "ops/terraform LISTEN and admin_port are %s" % lport,
          "admin_port %r, LISTEN %r" % (tport, tfenv.get("BEADS_SCHED_LISTEN")))
    same = {k: (v, kenv[k]) for k, v in tfenv.items() if k in kenv and v != kenv[k]}
    check(not same, "ops/terraform defaults equal the ops/k8s settings", repr(same))
    container_tf = (hcl_blocks(sts_tf, "container") or [""])[0]
    tports = [hcl_attr(p, "container_port") for p in hcl_blocks(container_tf, "port")]
    check(tports == ["local.admin_port"], "ops/terraform container_port is admin_port", repr(tports))
    for probe, key in (("liveness_probe", "HEALTHZ"), ("readiness_probe", "READYZ")):
        body = (hcl_blocks(container_tf, probe) or [""])[0]
        check(hcl_attr(body, "path") == paths[key],
              "ops/terraform %s path is ADMIN_PATH_%s (%s)" % (probe, key, paths[key]), repr(hcl_attr(body, "path")))
        check(hcl_attr(body, "port") == "admin", "ops/terraform %s port is the admin port" % probe)
    check(re.search(r'"prometheus\.io/path"\s*=\s*"%s"' % re.escape(paths["METRICS"]), sts_tf) and
          re.search(r'"prometheus\.io/port"\s*=\s*"%s"' % lport, sts_tf),
          "ops/terraform scrape annotations: ADMIN_PATH_METRICS on the LISTEN port")
    tres = {}
    resvar = (hcl_blocks(tfall, 'variable "resources"') or [""])[0]
    for w in ("requests", "limits"):
        m = re.search(r"(?m)^\s*%s\s*=\s*\{([^}]*)\}" % w, resvar)
        tres[w] = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m.group(1))) if m else None
    kres = {w: {k: str(v) for k, v in c.get("resources", {}).get(w, {}).items()} for w in ("requests", "limits")}
    check(tres == kres, "ops/terraform default resources equal the ops/k8s ones", "%r vs %r" % (tres, kres))
    pod_sc = (hcl_blocks(sts_tf, "security_context") or [""])[0]
    check(hcl_attr(pod_sc, "run_as_user") == str(image_uid) and hcl_attr(pod_sc, "fs_group") == str(image_uid)
          and hcl_attr(pod_sc, "run_as_non_root") == "true",
          "ops/terraform runs as the image's user %s" % image_uid)
    check(re.search(r"read_only_root_filesystem\s*=\s*true", container_tf) and
          re.search(r"allow_privilege_escalation\s*=\s*false", container_tf) and
          re.search(r'drop\s*=\s*\["ALL"\]', container_tf),
          "ops/terraform container: read-only root, no privilege escalation, no capabilities")
    check(re.search(r"enable_service_links\s*=\s*false", sts_tf), "ops/terraform service links off")

    # ---------------- the built image's metadata ----------------
    # What the image really declares (podman image inspect), not the
    # Dockerfile's text: user, port, volume, entrypoint and command.
    if a.image_inspect:
        try:
            info = json.loads(read(a.image_inspect))
            info = info[0] if isinstance(info, list) else info
            cfg = info["Config"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            sys.exit("check.py: %s is not the output of podman image inspect: %s" % (a.image_inspect, e))
        ienv = dict(e.partition("=")[::2] for e in cfg.get("Env") or [])
        iuser = str(cfg.get("User") or "")
        m = re.match(r"^(\d+)(?::(\d+))?$", iuser)
        check(m and int(m.group(1)) != 0, "image: USER is a numeric non-root uid:gid", repr(iuser))
        iuid = int(m.group(1)) if m else None
        igid = int(m.group(2) or m.group(1)) if m else None
        check(psc.get("runAsUser") == iuid and psc.get("runAsGroup") == igid and psc.get("fsGroup") == igid,
              "ops/k8s runAsUser, runAsGroup, fsGroup are the image's user %s" % iuser, repr(psc))
        check([hcl_attr(pod_sc, k) for k in ("run_as_user", "run_as_group", "fs_group")] ==
              [str(iuid), str(igid), str(igid)],
              "ops/terraform run_as_user, run_as_group, fs_group are the image's user %s" % iuser)
        iports = sorted(cfg.get("ExposedPorts") or {})
        iport = int(iports[0].split("/")[0]) if len(iports) == 1 and iports[0].endswith("/tcp") else None
        check(iport is not None, "image: exposes one TCP port", repr(iports))
        check(listen_port(ienv.get("BEADS_SCHED_LISTEN")) == iport and lport == iport,
              "image: its LISTEN and the pod's LISTEN are its exposed port %s" % iport,
              "image LISTEN %r, pod LISTEN %r" % (ienv.get("BEADS_SCHED_LISTEN"), podenv.get("BEADS_SCHED_LISTEN")))
        check(list(ports.values()) == [iport] and sp.get("port") == iport and
              str(ann.get("prometheus.io/port")) == str(iport) and
              all(port_of(c.get(p, {}).get("httpGet", {}).get("port")) == iport
                  for p in ("livenessProbe", "readinessProbe")),
              "ops/k8s containerPort, probes, Service and scrape port are the image's port %s" % iport)
        check(tport == str(iport), "ops/terraform admin_port is the image's port %s" % iport, repr(tport))
        ivols = sorted(cfg.get("Volumes") or {})
        ivol = ivols[0] if len(ivols) == 1 else None
        check(ivol is not None, "image: one VOLUME", repr(ivols))
        check(store_mounts and mounts[store_mounts[0]]["mountPath"] == ivol and storedir == ivol,
              "ops/k8s mounts the store's claim at the image's VOLUME %s, and STORE is in it" % ivol,
              "store dir %r" % storedir)
        check(store_dir == ivol and os.path.dirname(tfenv.get("BEADS_SCHED_STORE", "")) == ivol,
              "ops/terraform store_dir is the image's VOLUME %s" % ivol, repr(store_dir))
        check(os.path.dirname(ienv.get("BEADS_SCHED_STORE", "")) == ivol,
              "image: its STORE is in its VOLUME", repr(ienv.get("BEADS_SCHED_STORE")))
        ientry, icmd = cfg.get("Entrypoint") or [], cfg.get("Cmd") or []
        check(ientry == [binpath], "image: ENTRYPOINT is the installed binary %s" % binpath, repr(ientry))
        check("command" not in c and c.get("args") == icmd,
              "ops/k8s keeps the image's ENTRYPOINT (no command) and its args are the image's CMD %s" % icmd,
              "command %r, args %r" % (c.get("command"), c.get("args")))
        targs = hcl_attr(container_tf, "args")
        check(not re.search(r"(?m)^\s*command\s*=", container_tf) and targs and json.loads(targs) == icmd,
              "ops/terraform keeps the image's ENTRYPOINT (no command) and its args are the image's CMD %s" % icmd,
              repr(targs))
        check(cfg.get("StopSignal") in (None, "", "SIGTERM", "15"), "image: stops on SIGTERM",
              repr(cfg.get("StopSignal")))
        tags = [t.rsplit(":", 1)[1] for t in info.get("RepoTags") or [] if ":" in t]
        ktag = [i.get("newTag") for i in kust.get("images", []) if i.get("name") == "beads-sched"]
        check(ktag and ktag[0] in tags and defaults.get("image_tag") in tags,
              "ops/k8s and ops/terraform deploy the built image's tag", "image tags %r, kustomization %r, "
              "terraform %r" % (tags, ktag, defaults.get("image_tag")))

    # ---------------- docs ----------------
    for doc in ("RUNBOOK.md", os.path.join("k8s", "README.md")):
        p = os.path.join(ops, doc)
        if os.path.exists(p):
            known(re.findall(r"BEADS_SCHED_[A-Z0-9_]+", read(p)), "ops/" + doc)

    # ---------------- the binary accepts the values ----------------
    tmp = tempfile.mkdtemp(prefix="bs-deploy-")
    try:
        for name, envset in (("ops/k8s pod", podenv), ("ops/terraform pod", dict(denv, **tfenv))):
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            for k, v in envset.items():
                if k.endswith("_FILE") and v:
                    f = os.path.join(tmp, os.path.basename(v))
                    with open(f, "w") as fh:
                        fh.write("secret\n")
                    v = f
                env[k] = v
            r = subprocess.run([a.bin, "config"], capture_output=True, text=True, env=env)
            check(r.returncode == 0, "%s environment accepted by `beads-sched config`" % name,
                  r.stderr.strip())
    finally:
        shutil.rmtree(tmp)

    # ---------------- runtime libraries ----------------
    runtime = set(l.split("#")[0].strip() for l in read(os.path.join(ops, "packages", "runtime.txt")).splitlines())
    runtime.discard("")
    if shutil.which("readelf") and shutil.which("dpkg") and shutil.which("ldd"):
        needed = re.findall(r"\(NEEDED\).*\[(.+)\]", subprocess.run(["readelf", "-d", a.bin],
                            capture_output=True, text=True).stdout)
        where = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(["ldd", a.bin],
                     capture_output=True, text=True).stdout, re.M))
        missing = []
        for lib in needed:
            p = where.get(lib)
            if lib.startswith(("libasan", "libubsan")):
                continue  # sanitizer builds only
            pkg = None
            for q in ([p, os.path.realpath(p)] if p else []):
                r = subprocess.run(["dpkg", "-S", q], capture_output=True, text=True)
                if r.returncode == 0:
                    pkg = r.stdout.split(":")[0]
                    break
            if pkg not in runtime and pkg != "libc6":
                missing.append("%s (%s)" % (lib, pkg))
        check(needed and not missing, "every library the binary links is in ops/packages/runtime.txt",
              "missing: " + ", ".join(missing))
    else:
        print("ok - # SKIP runtime libraries: readelf, ldd or dpkg not installed")
    check("sqlite3" in runtime, "the image carries the sqlite3 shell (ops/RUNBOOK.md)")

    print("%d passed, %d failed" % (PASSES, FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
