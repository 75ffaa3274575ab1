"""Just enough geography to make simulated trips look right on a map of Chicago.

Distances use a local flat-earth approximation: the fleet stays within ~40 km of
the city centre, where it is off by well under 0.1 %. Lake Michigan borders the
city to the east, so points are kept on land and routes follow the street grid.
"""

from __future__ import annotations

import math
from bisect import bisect_left

CITY_CENTRE = (41.8781, -87.6298)  # the Loop
_M_PER_DEG_LAT = 111_320.0

# Approximate shoreline (latitude, longitude): east of it is water.
_SHORE = (
    (41.60, -87.00),
    (41.665, -87.40),
    (41.69, -87.52),
    (41.72, -87.53),
    (41.76, -87.55),
    (41.79, -87.58),
    (41.84, -87.605),
    (41.866, -87.61),
    (41.89, -87.60),
    (41.91, -87.62),
    (41.96, -87.63),
    (42.01, -87.66),
    (42.05, -87.67),
    (42.08, -87.68),
    (42.18, -87.78),
    (42.36, -87.82),
)
_SHORE_LATS = [lat for lat, _ in _SHORE]
_SHORE_MARGIN_DEG = 0.01


def metres_per_deg_lon(lat: float) -> float:
    return _M_PER_DEG_LAT * math.cos(math.radians(lat))


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / _M_PER_DEG_LAT, lon + east_m / metres_per_deg_lon(lat)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    north = (lat2 - lat1) * _M_PER_DEG_LAT
    east = (lon2 - lon1) * metres_per_deg_lon((lat1 + lat2) / 2)
    return math.hypot(north, east)


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial heading from the first point to the second, 0 = north, clockwise."""
    north = (lat2 - lat1) * _M_PER_DEG_LAT
    east = (lon2 - lon1) * metres_per_deg_lon((lat1 + lat2) / 2)
    return math.degrees(math.atan2(east, north)) % 360


def on_land(lat: float, lon: float) -> bool:
    i = bisect_left(_SHORE_LATS, lat)
    if i == 0:
        shore = _SHORE[0][1]
    elif i == len(_SHORE):
        shore = _SHORE[-1][1]
    else:
        (lat0, lon0), (lat1, lon1) = _SHORE[i - 1], _SHORE[i]
        shore = lon0 + (lon1 - lon0) * (lat - lat0) / (lat1 - lat0)
    return lon < shore - _SHORE_MARGIN_DEG


def grid_route(start: tuple[float, float], end: tuple[float, float]) -> list[tuple[float, float]]:
    """Waypoints after `start`: one corner then `end`, like driving a street grid.

    Of the two corners, take one on land; if neither is, drive straight.
    """
    for corner in ((start[0], end[1]), (end[0], start[1])):
        if on_land(*corner):
            return [corner, end]
    return [end]


# Chicago's address grid: 800 numbers to the mile from State St (east-west) and
# Madison St (north-south). Good enough for a believable `formattedLocation`.
_STATE_ST_LON = -87.6278
_MADISON_ST_LAT = 41.8819
_UNITS_PER_DEG_LAT = _M_PER_DEG_LAT / 1609.344 * 800
_UNITS_PER_DEG_LON = metres_per_deg_lon(_MADISON_ST_LAT) / 1609.344 * 800
# (grid number, name); west and north positive.
_NORTH_SOUTH_STREETS = (
    (-100, "Michigan Ave"),
    (0, "State St"),
    (800, "Halsted St"),
    (1600, "Ashland Ave"),
    (2400, "Western Ave"),
    (3200, "Kedzie Ave"),
    (4000, "Pulaski Rd"),
    (4800, "Cicero Ave"),
    (5600, "Central Ave"),
    (6400, "Oak Park Ave"),
    (7200, "Harlem Ave"),
    (8400, "Cumberland Ave"),
    (10400, "Mannheim Rd"),
    (12000, "Wolf Rd"),
    (14400, "County Line Rd"),
)
_EAST_WEST_STREETS = (
    (-12700, "127th St"),
    (-11900, "119th St"),
    (-11100, "111th St"),
    (-10300, "103rd St"),
    (-9500, "95th St"),
    (-8700, "87th St"),
    (-7900, "79th St"),
    (-7100, "71st St"),
    (-6300, "63rd St"),
    (-5500, "55th St"),
    (-4700, "47th St"),
    (-3900, "Pershing Rd"),
    (-3100, "31st St"),
    (-2200, "Cermak Rd"),
    (-1200, "Roosevelt Rd"),
    (0, "Madison St"),
    (800, "Chicago Ave"),
    (1600, "North Ave"),
    (2400, "Fullerton Ave"),
    (3200, "Belmont Ave"),
    (4000, "Irving Park Rd"),
    (4800, "Lawrence Ave"),
    (5600, "Bryn Mawr Ave"),
    (6400, "Devon Ave"),
    (7200, "Touhy Ave"),
    (8000, "Oakton St"),
    (8800, "Dempster St"),
)


def fake_address(lat: float, lon: float) -> str:
    """A plausible street address near the point (not a real geocode)."""
    west = (_STATE_ST_LON - lon) * _UNITS_PER_DEG_LON
    north = (lat - _MADISON_ST_LAT) * _UNITS_PER_DEG_LAT
    ns_number, ns_name = _nearest(_NORTH_SOUTH_STREETS, west)
    ew_number, ew_name = _nearest(_EAST_WEST_STREETS, north)
    if abs(west - ns_number) <= abs(north - ew_number):
        number, side, street = abs(int(north)), "N" if north >= 0 else "S", ns_name
    else:
        number, side, street = abs(int(west)), "W" if west >= 0 else "E", ew_name
    return f"{number} {side} {street}, Chicago, IL"


def _nearest(streets: tuple[tuple[int, str], ...], value: float) -> tuple[int, str]:
    return min(streets, key=lambda street: abs(street[0] - value))
