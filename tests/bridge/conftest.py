"""Fixtures for the bridge's own suites (see tests/support/mqtt.py, postgres.py)."""

from tests.schemas.check import provider_schemas
from tests.support.mqtt import mosquitto, recorder
from tests.support.postgres import postgres, postgres_shared

__all__ = ["mosquitto", "postgres", "postgres_shared", "provider_schemas", "recorder"]
