"""Logging set-up, with every configured secret redacted from every line."""

from __future__ import annotations

import logging
from collections.abc import Iterable

REDACTED = "**redacted**"


class RedactingFilter(logging.Filter):
    """Replaces secrets in the formatted message (and its arguments) before output.

    Providers already avoid logging secrets; this is the net under them, for the
    line nobody thought about (an exception text quoting a URL with a key)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        found = {s for s in secrets if s and len(s) >= 4}
        self._secrets = sorted(set(self._secrets) | found, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


_FILTER = RedactingFilter()


def setup_logging(level: str = "info", secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configure the root logger once; later calls only add secrets and set the level."""
    _FILTER.add(secrets)
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(getattr(h, "_fleet_bridge", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        handler._fleet_bridge = True  # type: ignore[attr-defined]
        handler.addFilter(_FILTER)
        root.addHandler(handler)
    # paho and aiohttp are chatty at debug; keep them at info unless asked.
    for noisy in ("aiomqtt", "paho", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    return _FILTER
