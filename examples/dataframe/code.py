"""A DataFrame served live: filter rows and summarise them from the view."""

import numpy as np
import pandas as pd

rng = np.random.default_rng(42)
cities = ["Bogotá", "Lisbon", "Nairobi", "Osaka", "Toronto"]
sales = pd.DataFrame(
    {
        "city": rng.choice(cities, 500),
        "units": rng.integers(1, 100, 500),
        "price": rng.uniform(1.0, 50.0, 500).round(2),
        "day": pd.date_range("2026-01-01", periods=500, freq="D"),
    }
)
sales["revenue"] = (sales["units"] * sales["price"]).round(2)


def livepandas_cities():
    """The cities in the data."""
    return sorted(sales["city"].unique())


def livepandas_filter(city: str = "", min_units: int = 0, limit: int = 20):
    """Rows of one city (all cities when empty) with at least `min_units` units."""
    rows = sales[sales["units"] >= min_units]
    if city:
        rows = rows[rows["city"] == city]
    return rows.head(limit)


def livepandas_summary(min_units: int = 0):
    """Total revenue per city, as a Series."""
    rows = sales[sales["units"] >= min_units]
    return rows.groupby("city")["revenue"].sum().round(2)
