"""A deterministic synthetic stream for the ``demo`` feature set: delivery times.

Each day brings orders (distance, items, hour, weekday, temperature, courier rating,
region) whose delivery time is a non-linear function of them plus noise. The label (the
actual minutes) arrives when the order is delivered plus a reporting delay, so labels
trail features by hours. Some temperatures are missing (sensor gaps) and new couriers
have no rating.

From ``drift_day`` on, the world changes in two ways a CT system must notice:

* covariate shift: orders come from further away and the east region grows;
* concept change: the centre gets congested (slower per km) and rain-like cold days
  hurt more.

Day ``k`` is generated from ``(seed, k)`` alone, so any day can be regenerated
independently and two runs with the same arguments produce identical frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

__all__ = ["REGIONS", "StreamConfig", "generate_day", "generate_stream"]

REGIONS = ("center", "north", "south", "east", "west")
_REGION_P = np.array([0.35, 0.2, 0.2, 0.1, 0.15])
_REGION_P_DRIFT = np.array([0.25, 0.15, 0.15, 0.3, 0.15])
_REGION_DELAY = np.array([6.0, 2.0, 3.0, 4.0, 1.0])
_ORDER_ID_STRIDE = 10_000_000


@dataclass(frozen=True)
class StreamConfig:
    """Parameters of the stream; equal configs produce equal data."""

    seed: int = 7
    rows_per_day: int = 2_000
    start: datetime = datetime(2026, 1, 1)
    drift_day: int | None = None
    drift_strength: float = 1.0
    missing_temperature: float = 0.04
    missing_rating: float = 0.06


def generate_day(config: StreamConfig, day: int) -> pd.DataFrame:
    """All orders placed on ``day`` (0-based) with their labels and label-arrival times."""
    if config.rows_per_day < 1 or config.rows_per_day >= _ORDER_ID_STRIDE:
        raise ValueError(f"rows_per_day must be between 1 and {_ORDER_ID_STRIDE - 1}")
    rng = np.random.default_rng([config.seed, day])
    n = config.rows_per_day
    drifted = config.drift_day is not None and day >= config.drift_day
    s = config.drift_strength if drifted else 0.0

    seconds = np.sort(rng.uniform(0, 86_400, n))
    ordered_at = pd.Timestamp(config.start + timedelta(days=day)) + pd.to_timedelta(seconds, unit="s")
    hour = ordered_at.hour.to_numpy()
    weekday = ordered_at.day_of_week.to_numpy()
    region_p = (1 - s) * _REGION_P + s * _REGION_P_DRIFT if drifted else _REGION_P
    region_idx = rng.choice(len(REGIONS), size=n, p=region_p / region_p.sum())
    distance = rng.gamma(shape=2.0, scale=2.5 * (1 + 0.6 * s), size=n).clip(0.2, 99.0)
    items = rng.poisson(3.0, n) + 1
    season = np.sin(2 * np.pi * day / 365.0)
    temperature = 12 + 10 * season + rng.normal(0, 6, n)
    rating = np.clip(rng.normal(4.4, 0.35, n), 1.0, 5.0)

    rush = np.exp(-((hour - 12.5) ** 2) / 4.0) + 1.3 * np.exp(-((hour - 19.0) ** 2) / 3.0)
    weekend = (weekday >= 5).astype(float)
    speed = 22.0 * (1 - 0.35 * rush) * (1 - 0.1 * weekend)
    speed = np.where(region_idx == 0, speed * (1 - 0.4 * s), speed)
    cold = np.clip(5 - temperature, 0, None)
    minutes = (
        8.0
        + distance / speed * 60.0
        + 2.5 * np.sqrt(items)
        + _REGION_DELAY[region_idx]
        + 0.6 * cold * (1 + 2.0 * s)
        + 6.0 * (4.5 - rating).clip(0, None)
    )
    minutes = minutes * rng.lognormal(0.0, 0.12, n)
    minutes = np.round(np.clip(minutes, 1.0, 1_400.0), 1)

    report_delay_h = rng.exponential(6.0, n)
    delivered_at = ordered_at + pd.to_timedelta(minutes, unit="m") + pd.to_timedelta(report_delay_h, unit="h")

    temperature = np.round(temperature, 1)
    temperature[rng.random(n) < config.missing_temperature] = np.nan
    rating = np.round(rating, 2)
    rating[rng.random(n) < config.missing_rating] = np.nan
    return pd.DataFrame(
        {
            "order_id": day * _ORDER_ID_STRIDE + np.arange(n, dtype=np.int64),
            "ordered_at": ordered_at.astype("datetime64[us]"),
            "delivered_at": pd.DatetimeIndex(delivered_at).astype("datetime64[us]"),
            "distance_km": np.round(distance, 2),
            "items": items.astype(np.int64),
            "hour": hour.astype(np.int64),
            "weekday": weekday.astype(np.int64),
            "temperature_c": temperature,
            "courier_rating": rating,
            "region": np.asarray(REGIONS, dtype=object)[region_idx],
            "delivery_minutes": minutes,
        }
    )


def generate_stream(config: StreamConfig, days: int, first_day: int = 0) -> pd.DataFrame:
    """Days ``first_day`` .. ``first_day + days - 1`` concatenated in time order."""
    if days < 1:
        raise ValueError("days must be at least 1")
    frames = [generate_day(config, d) for d in range(first_day, first_day + days)]
    return pd.concat(frames, ignore_index=True)
