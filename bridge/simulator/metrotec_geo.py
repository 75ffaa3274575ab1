"""Just enough geography for a fleet around Tallinn (the Metrotec fleet).

The Gulf of Finland borders the city to the north: a point is on land when it lies
south of a rough shoreline (Paldiski bay to Muuga bay), so trips stay ashore.
Addresses read like Metrotec's (`EE, Harju maakond, Tallinn, Nõmme linnaosa,
Valdeku 168`): the nearest district or settlement, a street of it and a number.
They are plausible, not geocoded.
"""

from __future__ import annotations

from bisect import bisect_left

from bridge.simulator.vehicle import City

CENTRE = (59.4300, 24.7500)
FLEET_RADIUS_KM = 30.0

# (longitude, latitude of the shore): north of it is sea.
_SHORE = (
    (23.90, 59.33),
    (24.20, 59.37),
    (24.33, 59.40),
    (24.40, 59.43),
    (24.55, 59.43),
    (24.62, 59.435),
    (24.68, 59.45),
    (24.72, 59.45),
    (24.76, 59.443),
    (24.80, 59.44),
    (24.83, 59.46),
    (24.87, 59.48),
    (24.95, 59.48),
    (25.05, 59.49),
    (25.30, 59.52),
    (25.60, 59.55),
)
_SHORE_LONS = [lon for lon, _ in _SHORE]
_SHORE_MARGIN_DEG = 0.005

# (latitude, longitude, municipality, settlement or district, streets)
_PLACES = (
    (59.437, 24.752, "Tallinn", "Kesklinna linnaosa",
     ("Narva mnt", "Pärnu mnt", "Tartu mnt", "Liivalaia", "Estonia pst")),
    (59.445, 24.712, "Tallinn", "Põhja-Tallinna linnaosa",
     ("Kopli", "Paldiski mnt", "Telliskivi", "Sõle")),
    (59.425, 24.722, "Tallinn", "Kristiine linnaosa", ("Endla", "Tulika", "Sõpruse pst")),
    (59.405, 24.690, "Tallinn", "Mustamäe linnaosa",
     ("A. H. Tammsaare tee", "Ehitajate tee", "Akadeemia tee")),
    (59.425, 24.650, "Tallinn", "Haabersti linnaosa",
     ("Paldiski mnt", "Rannamõisa tee", "Õismäe tee")),
    (59.385, 24.680, "Tallinn", "Nõmme linnaosa", ("Valdeku", "Pärnu mnt", "Vabaduse pst")),
    (59.432, 24.845, "Tallinn", "Lasnamäe linnaosa",
     ("Laagna tee", "Peterburi tee", "Mustakivi tee")),
    (59.455, 24.840, "Tallinn", "Pirita linnaosa", ("Pirita tee", "Kloostrimetsa tee")),
    (59.430, 24.550, "Harku vald", "Tabasalu alevik", ("Klooga mnt", "Tammede allee")),
    (59.390, 24.600, "Harku vald", "Harku alevik", ("Instituudi tee", "Kadaka pst")),
    (59.320, 24.550, "Saue vald", "Saue linn", ("Tule", "Kütise")),
    (59.300, 24.670, "Saku vald", "Saku alevik", ("Tallinna mnt", "Üksnurme tee")),
    (59.310, 24.840, "Kiili vald", "Kiili alev", ("Tamme", "Sõmeru tee")),
    (59.360, 24.890, "Rae vald", "Jüri alevik", ("Aruküla tee", "Tartu mnt")),
    (59.440, 24.950, "Jõelähtme vald", "Loo alevik", ("Saha-Loo tee", "Narva mnt")),
    (59.470, 25.010, "Maardu linn", "Kallavere", ("Keemikute", "Nurga")),
    (59.310, 24.410, "Keila linn", "Keila", ("Haapsalu mnt", "Paldiski mnt")),
    (59.350, 24.230, "Lääne-Harju vald", "Laulasmaa küla", ("Puhkekodu tee", "Kase")),
)  # fmt: skip


def on_land(lat: float, lon: float) -> bool:
    i = bisect_left(_SHORE_LONS, lon)
    if i == 0:
        shore = _SHORE[0][1]
    elif i == len(_SHORE):
        shore = _SHORE[-1][1]
    else:
        (lon0, lat0), (lon1, lat1) = _SHORE[i - 1], _SHORE[i]
        shore = lat0 + (lat1 - lat0) * (lon - lon0) / (lon1 - lon0)
    return lat < shore - _SHORE_MARGIN_DEG


def fake_address(lat: float, lon: float) -> str:
    """A plausible Estonian address near the point, in Metrotec's style."""
    place = min(_PLACES, key=lambda p: (p[0] - lat) ** 2 + ((p[1] - lon) * 0.5) ** 2)
    _, _, municipality, settlement, streets = place
    street = streets[(int(lat * 500) + int(lon * 300)) % len(streets)]
    number = int(abs(lat * 20_000) + abs(lon * 10_000)) % 180 + 1
    return f"EE, Harju maakond, {municipality}, {settlement}, {street} {number}"


TALLINN = City("Tallinn", CENTRE, on_land, fake_address, radius_km=FLEET_RADIUS_KM)
