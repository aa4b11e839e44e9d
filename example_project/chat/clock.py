"""The current time in a city, from the IANA time zone database (``zoneinfo``)."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from functools import cache

# Cities whose zone is not named after them, or that people spell differently.
ALIASES = {
    "new york": "America/New_York",
    "nyc": "America/New_York",
    "san francisco": "America/Los_Angeles",
    "seattle": "America/Los_Angeles",
    "boston": "America/New_York",
    "washington": "America/New_York",
    "beijing": "Asia/Shanghai",
    "mumbai": "Asia/Kolkata",
    "delhi": "Asia/Kolkata",
    "new delhi": "Asia/Kolkata",
    "bangalore": "Asia/Kolkata",
    "munich": "Europe/Berlin",
    "geneva": "Europe/Zurich",
    "barcelona": "Europe/Madrid",
    "milan": "Europe/Rome",
    "st petersburg": "Europe/Moscow",
    "rio": "America/Sao_Paulo",
    "rio de janeiro": "America/Sao_Paulo",
    "são paulo": "America/Sao_Paulo",
    "utc": "UTC",
}


class UnknownCity(LookupError):
    """No time zone is known for the city."""


def _key(city: str) -> str:
    return re.sub(r"[\s_\-.]+", " ", city).strip().lower()


@cache
def _zones_by_city() -> dict[str, str]:
    """``"tokyo" -> "Asia/Tokyo"`` for every zone named after a city."""
    zones: dict[str, str] = {}
    for name in sorted(zoneinfo.available_timezones()):
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "posix/", "right/")):
            zones.setdefault(_key(name.rsplit("/", 1)[1]), name)
    return zones


def zone_for(city: str) -> str:
    """The IANA zone name for ``city``; raises ``UnknownCity``."""
    key = _key(city)
    zone = ALIASES.get(key) or _zones_by_city().get(key)
    if zone is None:
        raise UnknownCity(city)
    return zone


def describe_time(city: str, now: datetime | None = None) -> str:
    """``"Tokyo (Asia/Tokyo): 14:03 on Tuesday 25 November 2025, UTC+09:00"``.

    ``now`` is any aware datetime (default: the current time). Raises
    ``UnknownCity`` when no zone is known for ``city``.
    """
    zone = zone_for(city)
    local = (now or datetime.now().astimezone()).astimezone(zoneinfo.ZoneInfo(zone))
    offset = local.strftime("%z")
    return (
        f"{city.strip().title()} ({zone}): {local:%H:%M} on {local:%A} {local.day} {local:%B %Y}, "
        f"UTC{offset[:3]}:{offset[3:]}"
    )
