"""Fixtures for the bridge's own suites (see tests/support/mqtt.py)."""

from tests.schemas.check import provider_schemas
from tests.support.mqtt import mosquitto, recorder

__all__ = ["mosquitto", "provider_schemas", "recorder"]
