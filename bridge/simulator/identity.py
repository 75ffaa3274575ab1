"""Who a simulated vehicle is: ids, names, VINs, plates, make and model.

Everything is derived from the vehicle's own random stream, so the same seed
gives the same fleet. VINs carry a valid check digit, so clients that validate
them accept them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.simulator.rng import Rng

# Samsara's vehicle ids are long numeric strings; the index keeps them readable.
VEHICLE_ID_PREFIX = "281474976710"


@dataclass(frozen=True, slots=True)
class Model:
    make: str
    model: str
    wmi: str  # the VIN's world manufacturer identifier
    tank_l: tuple[int, int]
    litres_per_100km: tuple[float, float]


MODELS = (
    Model("Freightliner", "Cascadia", "3AK", (300, 400), (30.0, 35.0)),
    Model("Kenworth", "T680", "1XK", (300, 400), (30.0, 35.0)),
    Model("Peterbilt", "579", "1XP", (300, 400), (30.0, 35.0)),
    Model("Volvo", "VNL 760", "4V4", (280, 380), (29.0, 34.0)),
    Model("International", "LT625", "3HS", (280, 380), (30.0, 35.0)),
    Model("Mack", "Anthem", "1M1", (280, 380), (30.0, 35.0)),
    Model("Freightliner", "M2 106", "1FV", (150, 250), (26.0, 30.0)),
    Model("Isuzu", "NPR-HD", "54D", (110, 150), (25.0, 28.0)),
    Model("Ford", "E-450", "1FD", (120, 150), (25.0, 28.0)),
    Model("Ram", "ProMaster 3500", "3C6", (60, 90), (25.0, 27.0)),
)

_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O or Q
_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_YEAR_CODES = {2015: "F", 2016: "G", 2017: "H", 2018: "J", 2019: "K", 2020: "L",
               2021: "M", 2022: "N", 2023: "P", 2024: "R", 2025: "S"}  # fmt: skip
_SERIAL_CHARS = "ACDEFGHJKLMNPRTUVWXYZ2345679"


@dataclass(frozen=True, slots=True)
class Identity:
    vehicle_id: str
    name: str
    vin: str
    plate: str
    make: str
    model: str
    year: int
    serial: str  # the telematics gateway's serial


def make_identity(seq: int, model: Model, rng: Rng) -> Identity:
    year = rng.randint(2015, 2025)
    return Identity(
        vehicle_id=f"{VEHICLE_ID_PREFIX}{seq:05d}",
        name=f"Truck {seq:04d}",
        vin=make_vin(model.wmi, year, rng),
        plate=f"P {rng.randint(100000, 999999)}",
        make=model.make,
        model=model.model,
        year=year,
        serial="G" + "-".join(_chars(rng, _SERIAL_CHARS, 3) for _ in range(3)),
    )


def make_vin(wmi: str, year: int, rng: Rng) -> str:
    descriptor = _chars(rng, _VIN_CHARS, 5)
    plant = rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ")
    serial = _chars(rng, "0123456789", 6)
    vin = f"{wmi}{descriptor}0{_YEAR_CODES[year]}{plant}{serial}"
    return vin[:8] + vin_check_digit(vin) + vin[9:]


def vin_check_digit(vin: str) -> str:
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def _chars(rng: Rng, alphabet: str, count: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))
