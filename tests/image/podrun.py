#!/usr/bin/env python3
"""Runs a container image's root file system the way the StatefulSet's pod
runs it, without a container runtime (tests/image/test_image.sh).

    podrun.py env --image-env JSON --k8s DIR
        The pod's environment, one NAME=VALUE a line: the image's Env, then
        the ConfigMap (envFrom), then the container's env, as the kubelet
        layers them (ops/k8s/configmap.yaml, ops/k8s/statefulset.yaml).

    podrun.py run --root DIR --stage DIR --user UID:GID --workdir PATH
                  [--volume HOST:PATH]... [--secret HOST:PATH]...
                  [--env-file FILE] -- ARGV...
        In a private mount namespace (the script re-runs itself under
        `unshare -m`): binds the image root DIR onto the empty directory
        STAGE and makes it read-only (readOnlyRootFilesystem), mounts /proc,
        a /dev with the usual device nodes, an emptyDir-like tmpfs on /tmp,
        every --volume read-write and every --secret read-only (under /run),
        then chroots into it, enters WORKDIR, drops to UID:GID with no
        supplementary groups and no capabilities, sets no_new_privs
        (allowPrivilegeEscalation: false) and execs ARGV with exactly the
        environment of FILE. The process keeps this script's pid, so a
        signal sent to it reaches the program as it would reach the pod's
        PID 1. The mounts vanish with the namespace when the program exits.
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys


def sh(*argv):
    subprocess.run(argv, check=True)


def pod_env(args):
    import yaml
    env = {}
    for item in json.loads(args.image_env) or []:
        k, _, v = item.partition("=")
        env[k] = v
    docs = []
    for f in sorted(os.listdir(args.k8s)):
        if f.endswith((".yaml", ".yml")):
            with open(os.path.join(args.k8s, f), encoding="utf-8") as fh:
                docs += [d for d in yaml.safe_load_all(fh) if d]
    cms = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    sts = [d for d in docs if d.get("kind") == "StatefulSet"]
    if len(sts) != 1:
        sys.exit("podrun.py: expected one StatefulSet in %s, found %d" % (args.k8s, len(sts)))
    container = sts[0]["spec"]["template"]["spec"]["containers"][0]
    for ref in container.get("envFrom", []):
        name = ref.get("configMapRef", {}).get("name")
        if name not in cms:
            sys.exit("podrun.py: envFrom names ConfigMap %r, not in %s" % (name, args.k8s))
        env.update({k: str(v) for k, v in cms[name].items()})
    for e in container.get("env", []):
        if "value" not in e:
            sys.exit("podrun.py: env %s is not a plain value" % e.get("name"))
        env[e["name"]] = str(e["value"])
    for k, v in env.items():
        if "\n" in v:
            sys.exit("podrun.py: %s holds a newline" % k)
        print("%s=%s" % (k, v))


def pairs(specs, what):
    out = []
    for s in specs:
        host, sep, path = s.rpartition(":")
        if not sep or not host or not path.startswith("/"):
            sys.exit("podrun.py: --%s wants HOST:/PATH, not %r" % (what, s))
        out.append((host, path))
    return out


def run(args):
    if os.environ.get("PODRUN_IN_NAMESPACE") != "1":
        os.environ["PODRUN_IN_NAMESPACE"] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private",
                              sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
    uid, _, gid = args.user.partition(":")
    uid, gid = int(uid), int(gid or uid)
    stage = args.stage
    if os.listdir(stage):
        sys.exit("podrun.py: --stage %s is not empty" % stage)
    sh("mount", "--bind", args.root, stage)
    sh("mount", "-o", "remount,bind,ro", stage)
    sh("mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", stage + "/proc")
    sh("mount", "-t", "tmpfs", "-o", "nosuid,mode=0755,size=1m", "dev", stage + "/dev")
    for d in ("null", "zero", "full", "random", "urandom", "tty"):
        open(stage + "/dev/" + d, "w").close()
        sh("mount", "--bind", "/dev/" + d, stage + "/dev/" + d)
    sh("mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=1777,size=64m", "tmp", stage + "/tmp")
    for host, path in pairs(args.volume, "volume"):
        sh("mount", "--bind", host, stage + path)
    secrets = pairs(args.secret, "secret")
    if secrets:
        # The root is read-only: the mount points go on a tmpfs over /run,
        # itself read-only once they are in place.
        sh("mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=0755,size=1m", "run", stage + "/run")
        for host, path in secrets:
            if not path.startswith("/run/"):
                sys.exit("podrun.py: --secret mounts go under /run, not %s" % path)
            os.makedirs(stage + path, exist_ok=True)
            sh("mount", "--bind", host, stage + path)
            sh("mount", "-o", "remount,bind,ro", stage + path)
        sh("mount", "-o", "remount,ro", stage + "/run")
    env = {}
    if args.env_file:
        with open(args.env_file, encoding="utf-8") as fh:
            for line in fh.read().splitlines():
                k, sep, v = line.partition("=")
                if sep:
                    env[k] = v
    os.chroot(stage)
    os.chdir(args.workdir)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS = 38
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit("podrun.py: prctl(PR_SET_NO_NEW_PRIVS): %s" % os.strerror(ctypes.get_errno()))
    # A command without a slash is looked up in the image's PATH, as
    # container runtimes do.
    prog = args.argv[0]
    if "/" not in prog:
        for d in env.get("PATH", "/usr/bin:/bin").split(":"):
            if d and os.access(os.path.join(d, prog), os.X_OK):
                prog = os.path.join(d, prog)
                break
    os.execve(prog, args.argv, env)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("--image-env", required=True)
    e.add_argument("--k8s", required=True)
    r = sub.add_parser("run")
    r.add_argument("--root", required=True)
    r.add_argument("--stage", required=True)
    r.add_argument("--user", required=True)
    r.add_argument("--workdir", default="/")
    r.add_argument("--volume", action="append", default=[])
    r.add_argument("--secret", action="append", default=[])
    r.add_argument("--env-file")
    r.add_argument("argv", nargs="+")
    a = ap.parse_args()
    if a.cmd == "env":
        pod_env(a)
    else:
        if a.argv and a.argv[0] == "--":
            a.argv = a.argv[1:]
        run(a)


if __name__ == "__main__":
    main()
