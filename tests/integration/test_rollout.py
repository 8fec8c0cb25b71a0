"""Bundle rollout while serving (SIGHUP, ``--watch``): a real ``fmnist serve`` on toy bundles that
differ in their classifier's weights, clients classifying while the bundle link is swapped.

Every answer must come from one bundle, the one its ``x-fmnist-bundle`` header names, and no
request may fail; a broken bundle is refused while the old one serves on."""

import io
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_fakes import start_serve, stop

import tests.toybundle as toybundle
from fmnist.runtime import images
from fmnist.serve.app import load_bundle
from fmnist.serve.served import bundle_id

SWAPS = 6
CLIENTS = 6


def garment_png(top: int, bottom: int) -> bytes:
    """A 28x28 image, its top half one grey and its bottom half another (the toy classifier's
    labels follow the mean and the top-bottom tilt)."""
    a = np.full((28, 28), bottom, np.uint8)
    a[:14] = top
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


PNGS = [garment_png(t, b) for t, b in [(200, 20), (20, 200), (120, 120), (250, 250), (90, 30)]]


def build_other(folder: Path) -> Path:
    """The toy bundle with a classifier head that maps each feature to another class."""
    head = np.zeros_like(toybundle.HEAD)
    head[0, 4] = head[1, 7] = head[2, 2] = 6.0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(toybundle, "HEAD", head)
        return toybundle.build_toy_bundle(folder)


def build_broken(folder: Path) -> Path:
    """The toy bundle with a flipped byte in its classifier: its hash no longer matches."""
    toybundle.build_toy_bundle(folder)
    graph = folder / "classifier.onnx"
    data = bytearray(graph.read_bytes())
    data[-5] ^= 0xFF
    graph.write_bytes(bytes(data))
    return folder


def point(link: Path, target: Path) -> None:
    """Swap ``link`` to ``target`` in one rename, as ``fmnist export`` does."""
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout")
    a, b = toybundle.build_toy_bundle(root / "v-a"), build_other(root / "v-b")
    broken = build_broken(root / "v-broken")
    x = np.stack([images.load_image(p, "auto") for p in PNGS])
    expected = {i: load_bundle(f, "cpu").classify(x) for i, f in zip(bundle_ids(a, b), (a, b), strict=True)}  # [5,10]
    assert len(expected) == 2
    return root, a, b, broken, expected


def bundle_ids(*folders: Path) -> list[str]:
    return [bundle_id(json.loads((f / "manifest.json").read_text())) for f in folders]


def serve_on_link(root: Path, target: Path, name: str, *args: str):
    """``fmnist serve`` on a new link ``root/name`` to ``target``: (link, process, url)."""
    link = root / name
    point(link, target)
    return (link, *start_serve(link, *args))


def model_id(url: str) -> str:
    return httpx.get(f"{url}/v1/model").json()["bundle_id"]


def wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def reloads(url: str, result: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f'fmnist_bundle_reloads_total{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0


class Clients:
    """``CLIENTS`` keep-alive clients classifying PNGS round-robin until stopped."""

    def __init__(self, url: str) -> None:
        self.url, self.stopping = url, threading.Event()
        self.answers: list[tuple[int, str, list[float]]] = []  # (image, bundle id, probabilities)
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(CLIENTS)]

    def run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = offset
            while not self.stopping.is_set():
                k = i % len(PNGS)
                try:
                    r = client.post("/v1/classify", files=[("file", ("g.png", PNGS[k], "image/png"))])
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    bundle = r.headers["x-fmnist-bundle"].split(";")[0]
                    self.answers.append((k, bundle, r.json()["results"][0]["probabilities"]))
                i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)


def test_watch_swaps_bundles_under_load_without_a_failure_or_a_mixed_answer(bundles):
    root, a, b, broken, expected = bundles
    link, proc, url = serve_on_link(
        root, a, "current-watch", "--watch", "--watch-interval", "0.1", "--max-wait-ms", "2"
    )
    try:
        ids = dict(zip((a, b), bundle_ids(a, b), strict=True))
        assert model_id(url) == ids[a]
        with Clients(url) as clients:
            for swap in range(SWAPS):
                target = (b, a)[swap % 2]
                point(link, target)
                wait_for(lambda t=target: model_id(url) == ids[t], f"swap {swap} to {target.name}")
                time.sleep(0.2)
            served_before = len(clients.answers)
            point(link, broken)
            wait_for(lambda: reloads(url, "failed") == 1, "the broken bundle's refusal")
            assert model_id(url) == ids[(b, a)[(SWAPS - 1) % 2]]
            assert httpx.get(f"{url}/readyz").status_code == 200
            wait_for(lambda: len(clients.answers) > served_before + 20, "answers after the refusal")
        assert clients.failures == []
        assert reloads(url, "ok") == SWAPS
        seen = {bundle for _, bundle, _ in clients.answers}
        assert seen == set(ids.values())
        for k, bundle, probabilities in clients.answers:
            np.testing.assert_allclose(probabilities, expected[bundle][k], atol=1e-6)
    finally:
        log = stop(proc)
    assert sum("refused" in line for line in log.splitlines()) == 1, log
    assert "Traceback" not in log, log


def test_sighup_reloads_and_every_answer_names_its_bundle(bundles):
    root, a, b, _, _ = bundles
    link, proc, url = serve_on_link(root, a, "current-hup")
    try:
        ids = bundle_ids(a, b)
        r = httpx.get(f"{url}/healthz")
        assert r.headers["x-fmnist-bundle"] == f"{ids[0]}; created=2026-01-01T00:00:00+0000"
        point(link, b)
        time.sleep(0.3)
        assert model_id(url) == ids[0]  # no --watch: nothing changes until SIGHUP
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: model_id(url) == ids[1], "the reload on SIGHUP")
        assert httpx.get(f"{url}/v1/model").headers["x-fmnist-bundle"].startswith(ids[1])
    finally:
        log = stop(proc)
    assert f"now serving bundle {ids[1]}" in log, log


def test_every_worker_watches_and_takes_the_new_bundle(bundles):
    root, a, b, _, _ = bundles
    link, proc, url = serve_on_link(root, a, "current-workers", "--workers", "2", "--watch", "--watch-interval", "0.1")
    try:
        ids = bundle_ids(a, b)
        point(link, b)
        # each request on a new connection, so both workers answer some of 20 in a row
        wait_for(lambda: all(model_id(url) == ids[1] for _ in range(20)), "both workers on the new bundle")
    finally:
        log = stop(proc)
    # a worker still starting when the link moved loads the new bundle at once, without a swap
    started_on_new = len(re.findall(rf"model ready \(provider [^,]*, bundle {ids[1]}", log))
    assert log.count(f"now serving bundle {ids[1]}") + started_on_new == 2, log


@pytest.mark.parametrize("kind", ["pipe", "zero", "folder"])
def test_watch_reads_a_swapped_in_manifest_as_the_loader_does(tmp_path, kind):
    """--watch polls the manifest: one that is a pipe must not block the watcher for ever, nor a link
    to /dev/zero read until memory runs out; each is 'unreadable', and the reload then refuses it."""
    from fmnist.serve.rollout import signature

    manifest = tmp_path / "manifest.json"
    if kind == "pipe":
        os.mkfifo(manifest)
    elif kind == "zero":
        manifest.symlink_to("/dev/zero")
    else:
        manifest.mkdir()
    answer: list = []
    reader = threading.Thread(target=lambda: answer.append(signature(tmp_path)), daemon=True)
    reader.start()
    reader.join(30)
    if reader.is_alive() and kind == "pipe":  # blocked in open(): a writer that closes at once frees it
        os.close(os.open(manifest, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
    assert answer, f"signature() of a {kind} manifest did not return"
    assert answer[0][1].startswith("unreadable: bundle file"), answer
