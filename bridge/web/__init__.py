"""The bridge's own web server: the depot dashboard, /metrics and /healthz.

Everything it shows comes from the running bridge itself (the publisher's
picture of every vehicle, the pollers' health and quota reports, the alerts as
they are published), never from MQTT: the dashboard works with the broker down.
See docs/dashboard.md.

- `picture`: what one vehicle or account looks like on the page;
- `live`: the live channel (snapshot, then coalesced diffs over a WebSocket);
- `auth`: the token / password, login sessions, throttled failures;
- `metrics`, `health`: Prometheus metrics and the supervisor's health check;
- `server`: the aiohttp application and its routes.
"""
