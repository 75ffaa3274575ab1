"""Logging set-up, with every configured secret redacted from every line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "**redacted**"
#: What ends a text cut to a length limit (`bridge.providers.parse.clip`).
CUT = "\u2026"
# A secret cut off at the end of a text (an error body kept to its first 200
# bytes) still leaks its beginning: this many characters of it are enough to
# redact, fewer are not told apart from ordinary words.
MIN_CUT = 6


def _forms(secret: str) -> set[str]:
    r"""How a secret can appear in a text: as it is, JSON-escaped (a provider
    echoing it inside a JSON string, with `\/` for `/` too), URL-encoded (in a
    query string or a form body)."""
    escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
    ascii_escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        escaped,
        ascii_escaped,
        escaped.replace("/", "\\/"),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote(secret),
    }
    return {form for form in forms if form}


class RedactingFilter(logging.Filter):
    """Replaces secrets in the formatted message (and its arguments) before output.

    Providers already avoid logging secrets; this is the net under them, for the
    line nobody thought about (an exception text quoting a URL with a key)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._raw: list[str] = []
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if s and len(s) >= 4}
        self._raw = sorted(set(self._raw) | found, key=len, reverse=True)
        forms = {form for secret in self._raw for form in _forms(secret)}
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(forms, key=len, reverse=True)
        # The beginnings of a secret (any of its forms) that a length limit can
        # leave: redacted before the cut mark, or at the very end of the text.
        self._cut = {form[:n] for form in forms for n in range(MIN_CUT, len(form))}
        self._longest_cut = max(map(len, self._cut), default=0)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if self._cut:
            text = CUT.join(self._redact_cut(part) for part in text.split(CUT))
        return text

    def _redact_cut(self, text: str) -> str:
        """`text` with a secret's beginning at its end redacted."""
        for n in range(min(self._longest_cut, len(text)), MIN_CUT - 1, -1):
            if text[-n:] in self._cut:
                return text[:-n] + REDACTED
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
