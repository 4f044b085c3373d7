"""Bearer tokens and their tiers (MARKETDATA_MCP_TOKENS, MARKETDATA_MCP_TIERS); no FastMCP import here,
core/config uses these parsers.

Tokens: comma-separated `TOKEN`, `TOKEN:TIER` (no tier: `standard`) or `TOKEN:TIER:EXPIRES` with
EXPIRES an ISO 8601 UTC date or time after which the token is refused (`2026-12-31`,
`2026-12-31T18:00Z`), e.g. `k3y...:pro,d3v...:free:2026-12-01`.
Tiers: comma-separated `NAME=PER_MINUTE/PER_DAY` tool calls, 0 meaning no limit, e.g. `pro=600/200000`.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass

DEFAULT_TIER = "standard"
DEFAULT_TIERS = "free=20/1000,standard=120/20000,pro=600/200000,unlimited=0/0"
# What a bearer token may hold (RFC 6750 b64token); ',' and ':' separate entries and tiers.
_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_TIER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_TIER = re.compile(r"^(?P<name>[^=]+)=(?P<minute>\d+)/(?P<day>\d+)$")


@dataclass(frozen=True)
class Tier:
    name: str
    per_minute: int  # 0: no limit
    per_day: int  # 0: no limit

    def __str__(self) -> str:
        return f"{self.name}={self.per_minute}/{self.per_day}"


@dataclass(frozen=True)
class Grant:
    """One configured token: only its SHA-256 and a short fingerprint are kept, never the token."""

    digest: bytes
    tier: str
    expires_at: float | None = None  # Unix seconds; None: never

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def fingerprint(self) -> str:
        """Names the token in logs and errors without revealing it."""
        return "sha256:" + self.digest.hex()[:8]

    def __repr__(self) -> str:
        return f"Grant({self.fingerprint}, tier={self.tier}, expires_at={self.expires_at})"


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str) -> tuple[Grant, ...]:
    """Parse MARKETDATA_MCP_TOKENS; errors name the entry by position, never echo the token."""
    grants: list[Grant] = []
    for position, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        token, _, rest = entry.partition(":")
        tier, _, expires = rest.partition(":")
        tier = tier.strip().lower() or DEFAULT_TIER
        if not _TOKEN.match(token.strip()):
            raise ValueError(
                f"entry {position}: a token is letters, digits and -._~+/ (then TOKEN:TIER), without spaces"
            )
        if not _TIER_NAME.match(tier):
            raise ValueError(f"entry {position}: tier {tier!r} is not a tier name (a-z, 0-9, -, _)")
        grant = Grant(token_digest(token.strip()), tier, _expiry(expires.strip(), position))
        if any(g.digest == grant.digest for g in grants):
            raise ValueError(f"entry {position}: the same token is listed twice")
        grants.append(grant)
    return tuple(grants)


def _expiry(text: str, position: int) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"entry {position}: expiry {text!r} is not an ISO 8601 date or time (2026-12-31, 2026-12-31T18:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_tiers(text: str) -> tuple[Tier, ...]:
    """Parse MARKETDATA_MCP_TIERS: `name=per_minute/per_day`, comma-separated."""
    tiers: list[Tier] = []
    for position, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        match = _TIER.match(entry)
        if match is None:
            raise ValueError(
                f"entry {position} ({entry!r}) must be NAME=PER_MINUTE/PER_DAY, e.g. pro=600/200000"
            )
        name = match["name"].strip().lower()
        if not _TIER_NAME.match(name):
            raise ValueError(f"entry {position}: {name!r} is not a tier name (a-z, 0-9, -, _)")
        if any(t.name == name for t in tiers):
            raise ValueError(f"entry {position}: tier {name!r} is listed twice")
        tiers.append(Tier(name, int(match["minute"]), int(match["day"])))
    if not tiers:
        raise ValueError("no tiers given")
    return tuple(tiers)


def check_grants(grants: tuple[Grant, ...], tiers: tuple[Tier, ...]) -> None:
    """Every token's tier must be declared; raises ValueError naming the missing tier."""
    names = {t.name for t in tiers}
    for position, grant in enumerate(grants, start=1):
        if grant.tier not in names:
            raise ValueError(
                f"token {position} ({grant.fingerprint}) has tier {grant.tier!r}, which "
                f"MARKETDATA_MCP_TIERS does not declare (declared: {', '.join(sorted(names))})"
            )
