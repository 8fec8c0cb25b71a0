"""One verified bundle and its onnxruntime sessions: encode, decode, classify, generate.

Every array is numpy float32; images are (N, 28, 28) in [0, 1] (light garment on black),
latents (N, d). The manifest is read and checked at once; a graph is verified (hash, inputs and
outputs against fmnist.contract) when its session is first created, the sampler arrays when a
sampler first draws, so a command pays only for what it uses (``lazy=False`` verifies everything
up front, as a server does before it is ready). ``InferenceSession.run`` is thread-safe, so one
Bundle serves many threads.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from fmnist import artifacts
from fmnist.contract import graphs as graph_contract
from fmnist.contract import samplers as sampler_contract
from fmnist.errors import BundleError, InputError
from fmnist.runtime.sampling import DEFAULT_SAMPLER, check_generate, load_samplers
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
    """One bundle, verified as it is used; its sessions are created on first use and shared by all threads."""

    def __init__(
        self,
        folder: Path | str | None = None,
        provider: str = "auto",
        threads: int | None = None,
        *,
        lazy: bool = True,
    ) -> None:
        """Read and check the manifest; verify the graphs and sampler arrays when first used, or
        all of them now with ``lazy=False``. ``folder`` None means ``artifacts.resolve_bundle_dir(None)``.
        ``threads`` caps onnxruntime's threads per call (None: THREADS, at most 4); a server running
        many requests at once wants 1. Raises BundleError / InputError (one line)."""
        self.threads = threads
        self.folder = artifacts.resolve_bundle_dir(folder)
        self.manifest = artifacts.read_manifest(self.folder)
        self.format_version = int(self.manifest["format_version"])
        self.latent_dim = int(self.manifest["latent_dim"])
        self.class_names = list(self.manifest["class_names"])
        self.providers = choose_providers(provider)
        self.provider = self.providers[0]
        self._sessions: dict = {}
        self._verified: dict[str, bytes] = {}  # graph name -> its checked bytes, until its session exists
        self._samplers: dict[str, np.ndarray] | None = None
        self._lock = threading.RLock()
        if not lazy:
            self.verify()

    def verify(self) -> None:
        """Verify every file the manifest lists, every graph and the sampler arrays, now."""
        graphs = {g.file: g.name for g in graph_contract.GRAPHS}
        with self._lock:
            for file in self.manifest["files"]:
                if file in graphs and graphs[file] not in self._sessions:
                    self._verified[graphs[file]] = artifacts.verify_graph(self.folder, self.manifest, graphs[file])
                elif file == artifacts.SAMPLERS_NPZ:
                    self.sampler_arrays()
                elif file not in graphs:
                    artifacts.read_verified(self.folder, self.manifest, file)

    def session(self, name: str):
        """The onnxruntime session of graph ``name``, verified and created on first use (thread-safe)."""
        with self._lock:
            if name not in self._sessions:
                data = self._verified.pop(name, None) or artifacts.verify_graph(self.folder, self.manifest, name)
                self._sessions[name] = self._create_session(self.folder / artifacts.GRAPHS[name], data)
            return self._sessions[name]

    def _create_session(self, path: Path, data: bytes):
        """A session of the verified bytes ``data`` (not the file again, which may have changed since)."""
        import onnxruntime as ort

        error = None
        if self.providers[0] == CUDA:
            try:  # ort's own fallback prints a banner on stdout; ours is one line on stderr
                session = ort.InferenceSession(
                    data, session_options(self.threads), providers=self.providers, enable_fallback=0
                )
                if session.get_providers()[0] == CUDA:
                    return session
            except Exception as e:  # noqa: BLE001 (any EP failure: reported, then the CPU)
                error = first_line(e)
            reason = error or "its CUDA or cuDNN libraries did not load"
            notice(f"the CUDA provider failed to start ({reason}); using the CPU")
            self.providers, self.provider = [CPU], CPU
        try:
            return ort.InferenceSession(data, session_options(self.threads), providers=[CPU])
        except Exception as e:  # noqa: BLE001 (hashes matched, so the graph itself is unusable)
            raise BundleError(f"bundle file {path} cannot be loaded by onnxruntime ({first_line(e)})") from None

    def run(self, name: str, array: np.ndarray, *outputs: str) -> dict[str, np.ndarray]:
        """The outputs of graph ``name`` (those named in ``outputs``, else all) on ``array``, by
        their contract names, in batches of BATCH along the first axis."""
        if len(array) == 0:
            raise InputError("no images or latents to run the model on")
        graph = graph_contract.graph(name)
        names = list(outputs) or [t.name for t in graph.outputs]
        session, feed = self.session(name), graph.inputs[0].name
        parts = [session.run(names, {feed: array[i : i + BATCH]}) for i in range(0, len(array), BATCH)]
        return {n: np.concatenate(outs) for n, outs in zip(names, zip(*parts, strict=True), strict=True)}

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.run("encoder", as_images(images), "latent")["latent"]

    def decode(self, latents: np.ndarray, graph: str = "decoder") -> np.ndarray:
        latents = np.ascontiguousarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise InputError(f"latents must have shape (N, {self.latent_dim}), not {latents.shape}")
        return self.run(graph, latents, "image")["image"][:, 0]

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(images))

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 10)."""
        return self.run("classifier", as_images(images), "probabilities")["probabilities"]

    def features(self, images: np.ndarray) -> np.ndarray:
        """The classifier head's hidden activations (N, h), for sample-quality figures."""
        return self.run("classifier", as_images(images), "features")["features"]

    def vae_encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.run("vae_encoder", as_images(images), "mean", "logvar")
        return out["mean"], out["logvar"]

    def sampler_arrays(self) -> dict[str, np.ndarray]:
        """The checked arrays of samplers.npz, read on first use (thread-safe)."""
        with self._lock:
            if self._samplers is None:
                data = artifacts.read_verified(self.folder, self.manifest, artifacts.SAMPLERS_NPZ)
                path = self.folder / artifacts.SAMPLERS_NPZ
                self._samplers = load_samplers(path, self.latent_dim, self.format_version, data)
            return self._samplers

    def has_classes(self, sampler: str = DEFAULT_SAMPLER) -> bool:
        """Whether ``sampler`` can draw one class from this bundle (format 2 and a per-class fit)."""
        s = sampler_contract.sampler(sampler)
        return s.draw_class is not None and self.format_version >= sampler_contract.CLASS_FORMAT

    def sample_latents(
        self, n: int, sampler: str = DEFAULT_SAMPLER, seed: int = 0, label: int | None = None
    ) -> np.ndarray:
        """(n, d) latents of ``sampler``; with ``label``, of that class only (fmnist.contract.parse_class
        turns a name into one)."""
        check_generate(n, sampler)
        s = sampler_contract.sampler(sampler)
        if label is None:  # a sampler without arrays (vae) leaves samplers.npz unread
            return s.draw(self.sampler_arrays() if s.arrays else {}, n, seed, self.latent_dim)
        return s.draw_class(self.sampler_arrays(), n, seed, self._checked_label(s, label))

    def _checked_label(self, s: sampler_contract.Sampler, label: int) -> int:
        if s.draw_class is None:
            able = ", ".join(x.name for x in sampler_contract.SAMPLERS if x.draw_class is not None)
            raise InputError(f"sampler {s.name} cannot draw one class: use {able} for a class")
        if not self.has_classes(s.name):
            raise InputError(
                f"bundle {self.folder} (format {self.format_version}) has no per-class samplers: "
                f"{sampler_contract.CLASS_EXPORT}"
            )
        if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= label < len(self.class_names):
            raise InputError(f"class label must be a whole number from 0 to {len(self.class_names) - 1}, not {label!r}")
        return int(label)

    def generate(self, n: int, sampler: str = DEFAULT_SAMPLER, seed: int = 0, label: int | None = None) -> np.ndarray:
        """(n, 28, 28) new images; n in 1..MAX_GENERATE, sampler in SAMPLERS, ``label`` a class
        number or None for any class (InputError if not)."""
        z = self.sample_latents(n, sampler, seed, label)
        return self.decode(z, sampler_contract.sampler(sampler).decoder)

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
