"""API keys: with ``--api-key-file`` or ``$FMNIST_API_KEYS`` set, a request needs
``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` on every route but the probes, and on
``/metrics`` and the docs too unless ``--public-docs-metrics``. A missing or wrong key gets 401
with ``WWW-Authenticate: Bearer``. Keys are compared in constant time, each of them, and never
logged; the file is re-read on every reload (SIGHUP, ``--watch``).

The check is ASGI middleware, so every route is behind it, including routers added later;
what is open is the allow-list here. Standard library only (the settings check a key file).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import stat
from typing import Any

from fmnist.errors import ConfigError

ENV_VAR = "FMNIST_API_KEYS"  # comma-separated
PROBES = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")
DOCS_AND_METRICS = ("/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
DOCS_ASSETS = "/static-offline-docs/"  # fastapi-offline's scripts and styles for /docs and /redoc
LOOPBACK_NAMES = ("localhost",)

log = logging.getLogger("fmnist.serve")


MAX_KEY_FILE_BYTES = 1 << 20  # far past any list of keys; a link to /dev/zero must not fill memory


def read_key_file(path: str) -> tuple[str, ...]:
    """The keys of a key file: one per line, blank lines skipped. ConfigError (naming the flag) if
    it is not a regular file (a pipe would block the start), is over MAX_KEY_FILE_BYTES, cannot be
    read or holds none."""
    try:
        text = _read_regular(path).decode()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"--api-key-file {path}: cannot read it ({reason})") from None
    keys = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not keys:
        raise ConfigError(f"--api-key-file {path} holds no key: write one key per line")
    return keys


def _read_regular(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a named pipe returns at once
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"--api-key-file {path} is not a regular file: give a text file, one key per line")
        data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError(f"--api-key-file {path} is over {MAX_KEY_FILE_BYTES:,} bytes: write one key per line")
    return data


def env_keys() -> tuple[str, ...]:
    """The keys of ``$FMNIST_API_KEYS``; ConfigError when it is set to something that holds none
    (`` , ``): the operator meant keys, and serving open instead would be silent."""
    value = os.environ.get(ENV_VAR, "")
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    if value.strip() and not keys:
        raise ConfigError(f"${ENV_VAR} holds no key: set it to comma-separated keys, or unset it")
    return keys


class Keys:
    """The keys a request may carry (none: no check), from the key file and ``$FMNIST_API_KEYS``."""

    def __init__(self, key_file: str) -> None:
        self.key_file = key_file
        self.keys = self._read()

    def _read(self) -> tuple[bytes, ...]:
        found = (read_key_file(self.key_file) if self.key_file else ()) + env_keys()
        return tuple(k.encode() for k in found)

    def reload(self) -> None:
        """Re-read the key file; one that has become unusable keeps the keys in force."""
        try:
            self.keys = self._read()
        except ConfigError as e:
            log.error("fmnist serve: %s; keeping the %d key(s) in force", e, len(self.keys))

    def allows(self, given: bytes) -> bool:
        """``given`` is one of the keys; every key is compared, in constant time."""
        match = False
        for key in self.keys:
            match |= hmac.compare_digest(given, key)
        return match


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip()
        if name == b"x-api-key":
            return value.strip()
    return None


def is_open(path: str, public_docs_metrics: bool) -> bool:
    """Whether ``path`` is served without a key."""
    if path in PROBES:
        return True
    return public_docs_metrics and (path in DOCS_AND_METRICS or path.startswith(DOCS_ASSETS))


class RequireKey:
    """ASGI middleware: 401 for a request without a valid key on a route that needs one."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.keys = app, state.keys
        self.public = state.settings.public_docs_metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.keys.keys and not is_open(scope["path"], self.public):
            given = presented_key(scope["headers"])
            if given is None or not self.keys.allows(given):
                return await _unauthorized(send, "missing" if given is None else "wrong")
        await self.app(scope, receive, send)


async def _unauthorized(send, what: str) -> None:
    message = (
        "missing API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
        if what == "missing"
        else "wrong API key"
    )
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def open_notice(host: str, key_file: str) -> str | None:
    """The start-up notice for a server without keys listening beyond loopback, else None."""
    if key_file or env_keys():
        return None
    try:
        loopback = host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"serving on {host} without API keys: anyone who can reach the port can use it "
        f"(set --api-key-file or ${ENV_VAR})"
    )
