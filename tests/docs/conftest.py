"""Fixtures for the documentation's own tests."""

from tests.support.mqtt import mosquitto, recorder

__all__ = ["mosquitto", "recorder"]
