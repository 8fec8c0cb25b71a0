"""One verified bundle and its onnxruntime sessions: encode, decode, classify, generate.

Every array is numpy float32; images are (N, 28, 28) in [0, 1] (light garment on black),
latents (N, d). Sessions are created on first use, so a command loads only the graphs it needs;
``InferenceSession.run`` is thread-safe, so one Bundle serves many threads.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from fmnist import artifacts
from fmnist.errors import BundleError, InputError
from fmnist.runtime.sampling import DEFAULT_SAMPLER, check_generate, kde_sample, load_samplers
from fmnist.runtime.sessions import CPU, CUDA, choose_providers, first_line, notice, session_options

BATCH = 512  # images per onnxruntime call


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


class Bundle:
    """One verified bundle; its sessions are created on first use and shared by all threads."""

    def __init__(self, folder: Path | str | None = None, provider: str = "auto", threads: int | None = None) -> None:
        """Verify the bundle (manifest schema, hashes, graph shapes, sampler arrays) and prepare
        sessions lazily. ``folder`` None means ``artifacts.resolve_bundle_dir(None)``. ``threads``
        caps onnxruntime's threads per call (None: THREADS, at most 4); a server running many
        requests at once wants 1. Raises BundleError / InputError (one line)."""
        self.threads = threads
        self.folder = artifacts.resolve_bundle_dir(folder)
        self.manifest = artifacts.load_manifest(self.folder)
        self.latent_dim = int(self.manifest["latent_dim"])
        self.class_names = list(self.manifest["class_names"])
        # read now, so a bad archive is refused at load rather than by the first generate
        self._samplers = load_samplers(self.folder / artifacts.SAMPLERS_NPZ, self.latent_dim)
        self.providers = choose_providers(provider)
        self.provider = self.providers[0]
        self._sessions: dict = {}
        self._lock = threading.Lock()

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
            reason = error or "its CUDA or cuDNN libraries did not load"
            notice(f"the CUDA provider failed to start ({reason}); using the CPU")
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
        """Single-sample ELBO per image in nats: the bundle's likelihood (manifest ``vae``) summed
        over the pixels, minus the closed-form KL to N(0, I)."""
        from fmnist.runtime import likelihood

        x = as_images(images)[:, 0]
        mean, logvar = self.vae_encode(x)
        eps = np.random.default_rng(seed).standard_normal(mean.shape).astype(np.float32)
        recon = self.decode(mean + np.exp(0.5 * logvar) * eps, "vae_decoder").reshape(len(x), -1)
        kind, log_scale = likelihood.manifest_likelihood(self.manifest["vae"], recon.shape[1])
        y = likelihood.dequantize(x, seed) if kind == "gaussian-pixel" else x.reshape(len(x), -1)
        ll = likelihood.decoder_log_density(kind, y, recon, log_scale)
        kl = -0.5 * (1 + logvar - mean**2 - np.exp(logvar)).sum(1)
        return ll - kl
