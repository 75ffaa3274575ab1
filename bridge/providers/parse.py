"""Reading values out of provider JSON without trusting their types.

Providers send numbers as numbers or as strings, ids as ints or strings, and now
and then garbage; these turn any of it into a value or None, never an exception.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from bridge.logs import CUT
from bridge.model import Position


def clip(value: str, limit: int = 200) -> str:
    """A provider's text kept to `limit` characters, marked where it was cut (so
    that the redactor also finds a secret the cut left half of)."""
    return value if len(value) <= limit else value[:limit] + CUT


def number(value: Any) -> float | None:
    """A finite float from a number or numeric text; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        result = float(value)
    except (ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    result = number(value)
    return int(result) if result is not None and result.is_integer() else None


def text(value: Any) -> str | None:
    """Stripped non-empty text, or an int id as text."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def unix_time(value: Any) -> datetime | None:
    """Unix seconds (number or text) as an aware UTC datetime."""
    seconds = number(value)
    if seconds is None or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def valid_coordinates(latitude: float, longitude: float) -> bool:
    return -90 <= latitude <= 90 and -180 <= longitude <= 180


def event_position(
    location: Any, when: datetime | None, address: str | None = None
) -> Position | None:
    """An event's `{latitude, longitude, headingDegrees, accuracyMeters}` object
    (Samsara's and TrackSafe365's shape) as a Position; None when unusable."""
    if not isinstance(location, dict):
        return None
    lat, lon = number(location.get("latitude")), number(location.get("longitude"))
    if lat is None or lon is None or not valid_coordinates(lat, lon):
        return None
    return Position(
        latitude=lat,
        longitude=lon,
        time=when,
        heading=number(location.get("headingDegrees")),
        accuracy_m=number(location.get("accuracyMeters")),
        address=address,
    )


def fingerprint(*parts: str) -> str:
    """A stable, non-reversible id from credentials (never the credentials themselves)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
