"""A stand-in for ``fmnist.runtime.bundle.Bundle`` with fixed, checkable answers, and helpers
to run the HTTP app under a real uvicorn on a free loopback port.

Every answer is a function of each image's own pixels, so a caller can check that it got its own
result back (the micro-batcher must not mix callers up). Run as a script it serves the fake model
(``python serve_fakes.py PORT DELAY [DRAIN]``), for the SIGTERM test. Both run uvicorn with the
options ``fmnist serve`` gives it (the guarded protocol, the shutdown bound).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist import CLASS_NAMES
from fmnist.errors import InputError
from fmnist.runtime.sampling import MAX_GENERATE, SAMPLERS

LATENT_DIM = 2


def expected_probabilities(mean: float) -> np.ndarray:
    """FakeModel.classify's answer for an image of this mean: label floor(10*mean)."""
    label = min(int(mean * 10), 9)
    p = np.full(10, 0.0, np.float64)
    p[label] = 0.5 + mean / 4
    rest = (1 - p[label]) / 9
    p[np.arange(10) != label] = rest
    return p


class FakeModel:
    """Bundle's interface (encode/decode/reconstruct/classify/generate) without onnxruntime."""

    latent_dim = LATENT_DIM
    provider = "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay  # seconds per classify call, to let batches form
        self.class_names = list(CLASS_NAMES)
        self.calls: list[tuple[str, int]] = []  # (op, rows) per call
        self.manifest = {
            "format_version": 1,
            "package_version": "0.1.0",
            "latent_dim": LATENT_DIM,
            "class_names": self.class_names,
            "metrics": {"classifier_accuracy": 0.5},
            "files": {"classifier.onnx": {"size": 1, "sha256": "0" * 64}},
        }

    def _check(self, images: np.ndarray) -> None:
        assert images.dtype == np.float32 and images.ndim == 3 and images.shape[1:] == (28, 28)

    def classify(self, images: np.ndarray) -> np.ndarray:  # [N,28,28] -> [N,10]
        self._check(images)
        self.calls.append(("classify", len(images)))
        if self.delay:
            time.sleep(self.delay)
        means = images.mean(axis=(1, 2), dtype=np.float64)
        return np.stack([expected_probabilities(m) for m in means]).astype(np.float32)

    def encode(self, images: np.ndarray) -> np.ndarray:  # [N,28,28] -> [N,2]: mean, std
        self._check(images)
        self.calls.append(("encode", len(images)))
        return np.stack([images.mean(axis=(1, 2)), images.std(axis=(1, 2))], 1).astype(np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:  # [N,2] -> [N,28,28] filled with z[0]
        return np.repeat(latents[:, :1, None], 28, 1).repeat(28, 2).astype(np.float32)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:  # half as bright
        self._check(images)
        self.calls.append(("reconstruct", len(images)))
        return (images * 0.5).astype(np.float32)

    def generate(self, n: int, sampler: str = "kde", seed: int = 0, label: int | None = None) -> np.ndarray:
        """Image i is filled with ((seed + i) % 10) / 10 (``label``, the route's class, is not drawn by)."""
        if sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {sampler!r}")
        if not 1 <= n <= MAX_GENERATE:
            raise InputError(f"n must be in 1..{MAX_GENERATE}")
        values = ((seed + np.arange(n)) % 10) / 10
        return np.broadcast_to(values[:, None, None], (n, 28, 28)).astype(np.float32)


def png(value: int, size: tuple[int, int] = (28, 28)) -> bytes:
    """A PNG of one grey level (0..255): it loads as an image of mean value/255 (invert=no)."""
    buf = io.BytesIO()
    Image.new("L", size, value).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """A real uvicorn server for ``app`` on a free loopback port, in a background thread."""

    def __init__(self, app, connections=None) -> None:
        import uvicorn

        from fmnist.serve.connections import uvicorn_options
        from fmnist.serve.settings import ConnectionSettings, ServerSettings

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options = uvicorn_options(ServerSettings(log_level="warning"), connections or ConnectionSettings())
        config = uvicorn.Config(app, **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def start_serve(bundle: Path, *args: str, fd_limits: tuple[int, int | None] | None = None):
    """``fmnist serve`` on a free port, started with open-file limits (soft, hard; None: as now)."""
    port = free_port()

    def lower_limits() -> None:  # as a shell with a low `ulimit -n` would start it
        import resource

        if fd_limits is not None:
            soft, hard = fd_limits
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard or resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    from tests import servers  # here: run as a script, this file has no `tests` package on its path

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = servers.start(servers.serve_command(bundle, port, *args), env=env, preexec_fn=lower_limits)
    url = f"http://127.0.0.1:{port}"
    try:
        servers.wait_ready(proc, url)
    except BaseException:
        servers.stop(proc)
        raise
    return proc, url


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM to its whole process group (SIGKILL after a grace period), then everything it printed."""
    from tests import servers

    return servers.stop(proc)


if __name__ == "__main__":  # python serve_fakes.py PORT DELAY [DRAIN]: serve FakeModel(DELAY)
    import uvicorn

    from fmnist.serve.app import create_app
    from fmnist.serve.connections import uvicorn_options
    from fmnist.serve.settings import ConnectionSettings, ServerSettings

    port, delay = int(sys.argv[1]), float(sys.argv[2])
    connections = ConnectionSettings(shutdown_drain=float(sys.argv[3])) if len(sys.argv) > 3 else ConnectionSettings()
    options = uvicorn_options(ServerSettings(port=port, log_level="info"), connections)
    del options["workers"]
    uvicorn.run(create_app(FakeModel(delay)), **options)
