"""One verified bundle and its onnxruntime sessions: encode, decode, classify, generate.

Every array is numpy float32; images are (N, 28, 28) in [0, 1] (light garment on black),
latents (N, d). Sessions are created on first use, so a command loads only the graphs it needs;
``InferenceSession.run`` is thread-safe, so one Model serves many threads.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path

import numpy as np

from fmnist import artifacts
from fmnist.errors import BundleError, InputError

SAMPLERS = ("kde", "kde-pca", "vae")
DEFAULT_SAMPLER = "kde"
MAX_GENERATE = 10_000
BATCH = 512  # images per onnxruntime call
PROVIDERS = ("auto", "cpu", "cuda")
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
LOG_2PI = math.log(2 * math.pi)


def notice(message: str) -> None:
    """One line on stderr that does not stop the command."""
    print(f"fmnist: notice: {message}", file=sys.stderr)


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def choose_providers(provider: str) -> list[str]:
    """onnxruntime providers, by precedence, for ``--provider auto|cpu|cuda``.

    auto takes CUDA when this onnxruntime offers it and is silent otherwise (a CPU-only install is
    the normal case); cuda without a CUDA provider falls back to the CPU with a notice. A CUDA
    provider that is offered but fails to start gets its notice in Model.session.
    """
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise InputError(f"--provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    if provider != "cpu" and CUDA in ort.get_available_providers():
        return [CUDA, CPU]
    if provider == "cuda":
        notice("--provider cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); using the CPU")
    return [CPU]


def session_options(threads: int | None = None):
    """For a small box shared with other jobs: a few intra-op threads that sleep rather than spin
    when idle, operators run one after another (the graphs are chains), all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; warnings are not the user's business
    options.intra_op_num_threads = threads or THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def kde_sample(points: np.ndarray, bandwidth: float, n: int, seed: int) -> np.ndarray:
    """Gaussian-KDE samples, draw for draw what scikit-learn's KernelDensity.sample gives."""
    rng = np.random.RandomState(seed)
    u = rng.uniform(0, 1, size=n)
    i = (u * points.shape[0]).astype(np.int64)
    return np.atleast_2d(rng.normal(points[i], bandwidth))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a and b (Heusel et al. 2017):
    |mu_a - mu_b|^2 + tr(Sa + Sb - 2 (Sa Sb)^1/2), the trace term from the eigenvalues of
    Sa^1/2 Sb Sa^1/2 (symmetric, so no complex square roots)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sb @ root_a), 0, None)).sum()
    return max(0.0, float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * cross))


def top_classes(probabilities: np.ndarray, class_names: list[str], k: int = 1) -> list[list[dict]]:
    """(N, 10) probabilities -> per image the ``k`` likeliest {"label", "class", "probability"},
    most likely first; ties go to the lower label, as with argmax."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [
        [{"label": int(j), "class": class_names[j], "probability": float(p[j])} for j in row]
        for p, row in zip(probabilities, order, strict=True)
    ]


def as_images(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) or (N, 1, 28, 28) -> contiguous float32 (N, 1, 28, 28)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise InputError(f"images must have shape (N, 28, 28), not {images.shape}")
    return np.ascontiguousarray(images)


class Model:
    """One verified bundle; its sessions are created on first use and shared by all threads."""

    def __init__(self, folder: Path | str | None = None, provider: str = "auto", threads: int | None = None) -> None:
        """Verify the bundle (hashes, format) and prepare sessions lazily. ``folder`` None means
        ``artifacts.resolve_bundle_dir(None)``. ``threads`` caps onnxruntime's threads per call
        (None: THREADS, at most 4); a server running many requests at once wants 1. Raises BundleError /
        InputError (one line)."""
        self.threads = threads
        self.folder = artifacts.resolve_bundle_dir(folder)
        self.manifest = artifacts.load_manifest(self.folder)
        self.latent_dim = int(self.manifest["latent_dim"])
        self.class_names = list(self.manifest["class_names"])
        self.providers = choose_providers(provider)
        self.provider = self.providers[0]
        self._sessions: dict = {}
        self._lock = threading.Lock()
        self._samplers: dict[str, np.ndarray] | None = None

    def session(self, name: str):
        """The onnxruntime session of graph ``name``, created on first use (thread-safe)."""
        with self._lock:
            if name not in self._sessions:
                self._sessions[name] = self._create_session(self.folder / artifacts.GRAPHS[name])
            return self._sessions[name]

    def _create_session(self, path: Path):
        import onnxruntime as ort

        error = None
        if self.providers[0] == CUDA:
            try:  # ort's own fallback prints a banner on stdout; ours is one line on stderr
                session = ort.InferenceSession(
                    str(path), session_options(self.threads), providers=self.providers, enable_fallback=0
                )
                if session.get_providers()[0] == CUDA:
                    return session
            except Exception as e:  # noqa: BLE001 (any EP failure: reported, then the CPU)
                error = first_line(e)
            notice(f"the CUDA provider failed to start ({error or 'not loaded'}); using the CPU")
            self.providers, self.provider = [CPU], CPU
        try:
            return ort.InferenceSession(str(path), session_options(self.threads), providers=[CPU])
        except Exception as e:  # noqa: BLE001 (hashes matched, so the graph itself is unusable)
            raise BundleError(f"bundle file {path} cannot be loaded by onnxruntime ({first_line(e)})") from None

    def run(self, name: str, array: np.ndarray) -> list[np.ndarray]:
        """All outputs of graph ``name`` on ``array``, in batches of BATCH along the first axis."""
        if len(array) == 0:
            raise InputError("no images or latents to run the model on")
        session = self.session(name)
        input_name = session.get_inputs()[0].name
        parts = [session.run(None, {input_name: array[i : i + BATCH]}) for i in range(0, len(array), BATCH)]
        return [np.concatenate(outs) for outs in zip(*parts, strict=True)]

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.run("encoder", as_images(images))[0]

    def decode(self, latents: np.ndarray, graph: str = "decoder") -> np.ndarray:
        latents = np.ascontiguousarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise InputError(f"latents must have shape (N, {self.latent_dim}), not {latents.shape}")
        return self.run(graph, latents)[0][:, 0]

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(images))

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 10)."""
        return self.run("classifier", as_images(images))[1]

    def features(self, images: np.ndarray) -> np.ndarray:
        """The classifier head's hidden activations (N, h), for sample-quality figures."""
        return self.run("classifier", as_images(images))[2]

    def vae_encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, logvar = self.run("vae_encoder", as_images(images))
        return mean, logvar

    def sampler_arrays(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._samplers is None:
                with np.load(self.folder / artifacts.SAMPLERS_NPZ, allow_pickle=False) as f:
                    self._samplers = {k: f[k] for k in f.files}
            return self._samplers

    def sample_latents(self, n: int, sampler: str = DEFAULT_SAMPLER, seed: int = 0) -> np.ndarray:
        check_generate(n, sampler)
        s = self.sampler_arrays()
        if sampler == "kde":
            return kde_sample(s["kde_latent_points"], float(s["kde_latent_bandwidth"]), n, seed)
        if sampler == "kde-pca":
            coords = kde_sample(s["kde_pca_points"], float(s["kde_pca_bandwidth"]), n, seed)
            return coords @ s["pca_components"] + s["pca_mean"]  # PCA.inverse_transform (no whitening)
        return np.random.default_rng(seed).standard_normal((n, self.latent_dim))

    def generate(self, n: int, sampler: str = DEFAULT_SAMPLER, seed: int = 0) -> np.ndarray:
        """(n, 28, 28) new images; n in 1..MAX_GENERATE, sampler in SAMPLERS (InputError if not)."""
        z = self.sample_latents(n, sampler, seed)
        return self.decode(z, "vae_decoder" if sampler == "vae" else "decoder")

    def vae_elbo(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        """Single-sample ELBO per image in nats: Gaussian likelihood with the bundle's learned
        scale summed over the pixels, minus the closed-form KL to N(0, I)."""
        x = as_images(images)[:, 0]
        mean, logvar = self.vae_encode(x)
        eps = np.random.default_rng(seed).standard_normal(mean.shape).astype(np.float32)
        recon = self.decode(mean + np.exp(0.5 * logvar) * eps, "vae_decoder")
        log_scale = float(self.manifest["vae"]["log_scale"])
        ll = (-0.5 * ((x - recon) / math.exp(log_scale)) ** 2 - log_scale - 0.5 * LOG_2PI).reshape(len(x), -1).sum(1)
        kl = -0.5 * (1 + logvar - mean**2 - np.exp(logvar)).sum(1)
        return ll - kl


def check_generate(n: int, sampler: str) -> None:
    if not 1 <= n <= MAX_GENERATE:
        raise InputError(f"n must be between 1 and {MAX_GENERATE}, not {n}")
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
