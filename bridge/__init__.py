"""fleet-telematics-bridge: fleet telematics to MQTT and Home Assistant."""

__version__ = "0.2.0"
