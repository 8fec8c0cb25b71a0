"""Serving options, shared by ``fmnist serve`` (flags) and ``create_app`` (standard library only,
so the CLI can show the defaults without importing FastAPI)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from fmnist.errors import ConfigError

# How `fmnist serve --workers N` hands the bundle and settings to its worker processes.
ENV_VAR = "FMNIST_SERVE_CONFIG"


@dataclass(frozen=True)
class Settings:
    """One field per ``fmnist serve`` flag."""

    batching: bool = True  # gather concurrent requests into one onnxruntime call
    max_batch: int = 64  # most images per batched call
    max_wait_ms: float = 1.0  # longest a request waits for others to join its batch
    max_body_bytes: int = 4 * 1024 * 1024  # larger request bodies get 413
    max_files: int = 64  # most images in one request
    max_pixels: int = 2048 * 2048  # larger images (width x height, read from the header) get 400
    max_generate: int = 1024  # largest n for /v1/generate (at most inference.MAX_GENERATE)
    provider: str = "auto"  # onnxruntime provider when the app loads the bundle itself

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch >= 1, f"--max-batch must be >= 1, not {self.max_batch}"),
            (self.max_wait_ms >= 0, f"--max-wait-ms must be >= 0, not {self.max_wait_ms}"),
            (
                self.max_body_bytes >= 1024,
                f"--max-body-bytes must be >= 1024, not {self.max_body_bytes}",
            ),
            (self.max_files >= 1, f"--max-files must be >= 1, not {self.max_files}"),
            (self.max_pixels >= 28 * 28, f"--max-pixels must be >= 784, not {self.max_pixels}"),
            (self.max_generate >= 1, f"--max-generate must be >= 1, not {self.max_generate}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Settings:
        """Settings from a dict; unknown keys are an error."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown serve setting(s): {', '.join(unknown)}")
        return cls(**values)


def to_env(bundle_dir: str, settings: Settings) -> None:
    """Put the bundle folder and settings where worker processes find them."""
    os.environ[ENV_VAR] = json.dumps({"bundle_dir": bundle_dir, "settings": dataclasses.asdict(settings)})


def from_env() -> tuple[str, Settings]:
    try:
        values = json.loads(os.environ[ENV_VAR])
    except (KeyError, json.JSONDecodeError):
        raise ConfigError(f"${ENV_VAR} is not set: start workers with `fmnist serve`") from None
    return values["bundle_dir"], Settings.from_dict(values["settings"])
