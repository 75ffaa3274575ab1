"""Fixtures for the bridge's own suites (see tests/support/mqtt.py)."""

from tests.support.mqtt import mosquitto, recorder

__all__ = ["mosquitto", "recorder"]
