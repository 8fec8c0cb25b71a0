"""onnxruntime providers and session options: which device runs a graph, and how many threads."""

from __future__ import annotations

import os
import sys

from fmnist.errors import InputError

PROVIDERS = ("auto", "cpu", "cuda")
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


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
    provider that is offered but fails to start gets its notice in Bundle.session.
    """
    ort = import_onnxruntime()
    quiet(ort)
    if provider not in PROVIDERS:
        raise InputError(f"--provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    if provider != "cpu" and CUDA in ort.get_available_providers():
        return [CUDA, CPU]
    if provider == "cuda":
        notice("--provider cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); using the CPU")
    return [CPU]


def import_onnxruntime():
    """onnxruntime, imported with Ctrl-C and SIGTERM held: raised inside its native module's
    start-up, their exception would come out as a traceback of 'ImportError: initialization
    failed' instead of the one line that says the command was stopped."""
    from fmnist.runtime.signals import held

    with held():
        import onnxruntime
    return onnxruntime


def quiet(ort) -> None:
    """Only fatal messages from onnxruntime's own logger, set before the first session.

    A CUDA provider that cannot load (onnxruntime-gpu without the CUDA or cuDNN it was built for)
    logs a coloured error and a warning banner at session creation, and falls back to the CPU;
    that is one `fmnist: notice:` line here (Bundle.session). Errors that matter reach us as
    exceptions, with their message.
    """
    ort.set_default_logger_severity(4)


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
