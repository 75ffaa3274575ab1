"""Constants of the Fleet Telematics integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "fleet_telematics"
LOGGER = logging.getLogger(__package__)

# Config entry data (credentials and where they go).
CONF_PROVIDER: Final = "provider"
CONF_TOKEN: Final = "token"
CONF_API_KEY: Final = "api_key"
CONF_USERNAME: Final = "username"
CONF_PASSWORD: Final = "password"
CONF_REGION: Final = "region"
CONF_PLAN: Final = "plan"
# Only in the flow's advanced mode: another server (a proxy, or the simulators).
CONF_URL: Final = "url"

# Options.
CONF_RESERVE: Final = "reserve"
CONF_ADAPTIVE: Final = "adaptive"
CONF_INTERVAL: Final = "interval"
DEFAULT_RESERVE: Final = 0.1
DEFAULT_ADAPTIVE: Final = True
DEFAULT_INTERVAL: Final = 30.0

# Services (actions).
SERVICE_CREATE_TASK: Final = "create_task"
SERVICE_UPDATE_TASK: Final = "update_task"
SERVICE_REQUEST_SNAPSHOT: Final = "request_snapshot"
SERVICE_SET_LIGHTS: Final = "set_lights"
SERVICE_REFRESH: Final = "refresh"

# Repair issue raised when FLEETIZE blocks a token (#1002).
ISSUE_TOKEN_BLOCKED: Final = "token_blocked"

# The storage (quota ledger, cursors, alert ids) of one account, by its unique id.
STORAGE_VERSION: Final = 1
STORAGE_KEY: Final = "fleet_telematics.{}"
