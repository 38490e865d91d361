"""When a scene was acquired: from its dataset tags, else from its file or folder name.

Patterns and tags that any product may carry are listed here; those of one sensor are its registry entry's
(:attr:`~ofa_embed.sensors.Modality.date_patterns`, :attr:`~ofa_embed.sensors.Modality.date_tags`), tried
for every scene whatever its modality, the tags before the generic ones and the patterns after them.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

from ofa_embed.sensors import MODALITIES

__all__ = ["acquisition_time", "parse_datetime"]

# a date and time in ISO 8601 basic format, as Sentinel product names carry it: 20170613T101031
_DATE_PATTERNS = (
    r"(?P<year>20\d{2})(?P<month>\d{2})(?P<day>\d{2})T(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})",
)
_DATE_TAGS = ("ACQUISITION_DATE", "TIFFTAG_DATETIME", "datetime")
_TAG_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y:%m:%d %H:%M:%S", "%Y-%m-%d")
_TIME_GROUPS = ("year", "month", "day", "hour", "minute", "second")


@functools.lru_cache(maxsize=8)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


def _patterns() -> tuple[re.Pattern[str], ...]:
    registered = (p for m in MODALITIES.values() for p in m.date_patterns)
    return _compiled(tuple(dict.fromkeys((*_DATE_PATTERNS, *registered))))


def _tags() -> tuple[str, ...]:
    return tuple(dict.fromkeys((*(t for m in MODALITIES.values() for t in m.date_tags), *_DATE_TAGS)))


def parse_datetime(text: str) -> datetime | None:
    """The acquisition time (UTC) a file or folder name carries (the first pattern that gives a valid date),
    or None.
    """
    for pattern in _patterns():
        match = pattern.search(text)
        if match:
            parts = {g: int(v) for g, v in match.groupdict().items() if g in (*_TIME_GROUPS, "doy") and v is not None}
            try:
                if "doy" in parts:  # year and day of the year (HLS, MODIS: 2021001)
                    if not 1 <= parts["doy"] <= 366:
                        continue
                    day = datetime(parts["year"], 1, 1, tzinfo=UTC) + timedelta(days=parts["doy"] - 1)
                    parts |= {"month": day.month, "day": day.day}
                    if day.year != parts["year"]:
                        continue
                return datetime(parts["year"], parts["month"], parts["day"], parts.get("hour", 0), parts.get("minute", 0),
                                parts.get("second", 0), tzinfo=UTC)
            except ValueError:
                continue
    return None


def acquisition_time(name: str, tags: dict[str, str]) -> datetime | None:
    """The acquisition time (UTC) from the first date tag of ``tags`` whose value is in a format read here,
    else from ``name`` (:func:`parse_datetime`).
    """
    for key in _tags():
        if key in tags:
            value = tags[key].strip()
            for fmt in _TAG_FORMATS:
                try:
                    return datetime.strptime(value, fmt).replace(tzinfo=UTC)
                except ValueError:
                    continue
    return parse_datetime(name)
