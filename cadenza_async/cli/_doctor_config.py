"""What the settings say before anything is sent: which environment each endpoint is, and what the token says about itself.

Nothing here touches the network, and nothing returned contains the token:
a JWT's ``exp`` claim is read without checking its signature (the doctor
only wants to warn about an expired token), and every other claim stays
unread.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

from .._validate import is_loopback_host

__all__ = [
    "ENVIRONMENTS",
    "Environment",
    "TokenFacts",
    "environment_of",
    "human_duration",
    "shown_url",
    "token_facts",
]

Environment = Literal["UAT", "production", "simulator/loopback", "custom"]

#: The hosts of Cadenza's environments, REST then WebSocket.
ENVIRONMENTS: Final[dict[str, tuple[str, str]]] = {
    "UAT": ("cadenza-api-uat.algo724.com", "cadenza-ws-uat.algo724.com"),
    "production": ("cadenza-api.algo724.com", "cadenza-ws.algo724.com"),
}


def shown_url(url: str) -> str:
    """The URL as it may be printed: no user info, query or fragment (where secrets could hide)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def environment_of(url: str) -> Environment:
    """The environment a URL points at, recognised by its host (either of an environment's hosts)."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    for name, hosts in ENVIRONMENTS.items():
        if host in hosts:
            return "UAT" if name == "UAT" else "production"
    if host and is_loopback_host(host):
        return "simulator/loopback"
    return "custom"


@dataclass(frozen=True)
class TokenFacts:
    """What a token says about itself: whether it is a JWT, and when it expires (Unix seconds)."""

    jwt: bool
    expires_at: float | None = None

    def seconds_left(self, now: float) -> float | None:
        """Seconds until expiry (negative once expired); None when the token names no expiry."""
        return None if self.expires_at is None else self.expires_at - now


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_facts(token: str) -> TokenFacts:
    """Read a JWT's header and ``exp`` claim (signature unchecked); any other token is opaque."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return TokenFacts(jwt=False)
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return TokenFacts(jwt=False)
    if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
        return TokenFacts(jwt=False)
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        return TokenFacts(jwt=True)
    return TokenFacts(jwt=True, expires_at=float(exp))


def human_duration(seconds: float) -> str:
    """``seconds`` (a magnitude) as people say it: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
