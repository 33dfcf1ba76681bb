"""Where a model server is, and whether a note may be sent there.

Privacy by default: notes go to local files and to servers on this machine (loopback) only. A
server elsewhere needs an explicit opt-in (`allow_remote`), because notes may contain PHI. Clients
never read proxy settings from the environment (`trust_env=False`): a proxy would be another
machine seeing the note.
"""
from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlparse

from .errors import CoderError

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
DEFAULT_LMSTUDIO_URL = "http://127.0.0.1:1234/v1"


class RemoteNotAllowed(CoderError, PermissionError):
    """The server is not on this machine and the user has not opted in."""


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    parsed = urlparse(url)
    # A server listening on "all interfaces" (0.0.0.0, as in OLLAMA_HOST=0.0.0.0) is reached on
    # this machine through loopback.
    if parsed.hostname in ("0.0.0.0", "::"):
        url = url.replace(parsed.netloc, f"127.0.0.1:{parsed.port}" if parsed.port else "127.0.0.1", 1)
    return url


def is_loopback(url: str) -> bool:
    host = urlparse(normalize_url(url)).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_destination(url: str, allow_remote: bool, what: str = "This server") -> str:
    """The normalized URL, or RemoteNotAllowed when a note would leave the machine unasked."""
    url = normalize_url(url)
    if not is_loopback(url) and not allow_remote:
        raise RemoteNotAllowed(
            f"{what} at {url} is not on this computer. Notes may contain patient information: "
            "allow remote servers (the app's Settings, or --allow-remote) only if that server "
            "is approved for PHI.")
    return url


def ollama_url(explicit: str | None = None) -> str:
    """Ollama's address: explicit, else OLLAMA_HOST as Ollama itself reads it, else the default."""
    host = explicit or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_URL
    url = normalize_url(host)
    return url if urlparse(url).port else f"{url}:11434"
