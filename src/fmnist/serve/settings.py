"""Serving options, one dataclass field per ``fmnist serve`` flag: ``Settings`` (what the app runs
with), ``ServerSettings`` (how uvicorn runs it) and ``ConnectionSettings`` (how connections are
policed: deadlines, a cap, the drain on SIGTERM). The flags are made from these fields
(:mod:`fmnist.cli.serve`), and every bound is checked here, in ``check``. Standard library only, so
``fmnist --help`` shows the defaults without importing FastAPI or numpy."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from fmnist.errors import ConfigError
from fmnist.runtime.limits import MAX_PIXELS, parse_pixels, shown_pixels
from fmnist.runtime.sessions import PROVIDERS
from fmnist.serve.keys import env_keys, read_key_file

# How `fmnist serve --workers N` hands the bundle and settings to its worker processes.
ENV_VAR = "FMNIST_SERVE_CONFIG"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's
LOG_FORMATS = ("text", "json")


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
    shown: str | None = None,
    parse: Any = None,
    metavar: str | None = None,
) -> Any:
    """A field with what its flag needs: the default, the help text and the allowed values; ``shown``,
    the default as --help says it, and ``parse``, the flag's text to a value, when not the type's own."""
    metadata = {"help": help, "low": low, "high": high, "choices": choices}
    metadata |= {"shown": shown, "parse": parse, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """The flag of field ``name``: ``max_pixels`` -> ``--max-pixels``."""
    return "--" + name.replace("_", "-")


def check(settings: Any) -> None:
    """Raise ConfigError, naming the flag, for the first field outside its bounds or choices."""
    for f in dataclasses.fields(settings):
        value, low, high, choices = (getattr(settings, f.name), *map(f.metadata.get, ("low", "high", "choices")))
        if low is not None and value < low:
            raise ConfigError(f"{flag(f.name)} must be >= {low}, not {value}")
        if high is not None and value > high:
            raise ConfigError(f"{flag(f.name)} must be at most {high}, not {value}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{flag(f.name)} must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class Settings:
    """What the app runs with: batching, request limits and the onnxruntime provider."""

    batching: bool = option(True, "Gather concurrent requests into one model call.")
    max_batch: int = option(64, "Most images per batched call.", low=1)
    max_wait_ms: float = option(1.0, "Longest a request waits for others to join its batch, in ms.", low=0)
    max_body_bytes: int = option(4 * 1024 * 1024, "Larger request bodies get 413 before they are read.", low=1024)
    max_files: int = option(64, "Most images per request.", low=1)
    max_pixels: int = option(
        MAX_PIXELS,
        "Largest image, WIDTHxHEIGHT or a pixel count (read from its header); larger ones get 400.",
        low=28 * 28,
        shown=shown_pixels(MAX_PIXELS),
        parse=parse_pixels,
        metavar="WIDTHxHEIGHT",
    )
    max_generate: int = option(1024, "Largest n for /v1/generate.", low=1)
    provider: str = option("auto", "onnxruntime provider: auto, cpu or cuda.", choices=PROVIDERS)
    watch: bool = option(
        False, "Poll --artifacts and serve a new bundle as soon as one is there (SIGHUP reloads in any case)."
    )
    watch_interval: float = option(2.0, "Seconds between two looks at --artifacts under --watch.", low=0.05)
    api_key_file: str = option(
        "",
        "File of API keys, one per line, re-read on reload. With it or $FMNIST_API_KEYS (comma-separated) set, "
        "every route but the probes needs `Authorization: Bearer KEY` or `X-API-Key: KEY`.",
    )
    public_docs_metrics: bool = option(
        False, "Serve /metrics, /docs, /redoc and /openapi.json without an API key when keys are on."
    )
    log_format: str = option(
        "text",
        "Logs as uvicorn's plain lines, or json: one object per request and per server event.",
        choices=LOG_FORMATS,
    )

    def __post_init__(self) -> None:
        check(self)
        if self.api_key_file:
            read_key_file(self.api_key_file)  # a missing or empty key file stops the start, naming the flag
        env_keys()  # so does a $FMNIST_API_KEYS that holds no key
        # Imported here, not at the top: the sampling module brings numpy, which --help does not need.
        from fmnist.runtime.sampling import MAX_GENERATE

        if self.max_generate > MAX_GENERATE:
            raise ConfigError(f"--max-generate must be at most {MAX_GENERATE}, not {self.max_generate}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Settings:
        """Settings from a dict; unknown keys are an error."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown serve setting(s): {', '.join(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class ServerSettings:
    """How uvicorn runs the app: where it listens, how many processes, what it logs."""

    host: str = option("127.0.0.1", "Address to listen on.")
    port: int = option(8000, "TCP port (0: any free one).", low=0, high=65535)
    workers: int = option(1, "Server processes (each loads the bundle).", low=1)
    access_log: bool = option(False, "Log every request (costs throughput).")
    log_level: str = option("info", "uvicorn log level.", choices=LOG_LEVELS)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class ConnectionSettings:
    """What a connection may hold: enforced by :mod:`fmnist.serve.connections`, per process."""

    header_timeout: float = option(
        10.0, "Seconds a connection has to send a request's headers (from its opening or its last answer).", low=0.1
    )
    body_timeout: float = option(30.0, "Seconds a request has to send its body once its headers are in.", low=0.1)
    max_connections: int = option(
        10_000,
        "Open connections per process; past it, 503 (lowered below the open-file limit if over it).",
        low=1,
    )
    shutdown_drain: float = option(
        5.0,
        "On SIGTERM, seconds a request still sending its body gets before its connection is closed; "
        "requests in flight finish.",
        low=0,
    )

    def __post_init__(self) -> None:
        check(self)


def to_env(bundle_dir: str, settings: Settings) -> None:
    """Put the bundle folder and settings where worker processes find them."""
    os.environ[ENV_VAR] = json.dumps({"bundle_dir": bundle_dir, "settings": dataclasses.asdict(settings)})


def from_env() -> tuple[str, Settings]:
    try:
        values = json.loads(os.environ[ENV_VAR])
    except (KeyError, json.JSONDecodeError):
        raise ConfigError(f"${ENV_VAR} is not set: start workers with `fmnist serve`") from None
    return values["bundle_dir"], Settings.from_dict(values["settings"])
