"""The redactor finds a secret in every form a provider's echo can give it.

Exact matches were all it found (issue 16): a secret cut by the 200-byte limit
on error bodies, JSON-escaped or URL-encoded in an echo went out as it was.
"""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest

from bridge.logs import REDACTED, RedactingFilter
from bridge.providers.http import Response

SECRET = 'tok/9f8e7d"6c+5b&4a=3f 2e1d'
OTHER = "api-key-0123456789abcdef"


@pytest.mark.parametrize(
    "echo",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET).replace("/", "\\/")[1:-1],
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        quote(SECRET),
    ],
    ids=["raw", "json", "json-slash", "url", "url-plus", "url-path"],
)
def test_every_form_of_an_echoed_secret_is_redacted(echo: str) -> None:
    redactor = RedactingFilter([SECRET, OTHER])
    text = redactor.redact(f'provider said: {{"detail": "bad token {echo}"}} (HTTP 401)')
    assert REDACTED in text
    assert "9f8e7d" not in text
    assert "tok" not in text.replace("token", "")


@pytest.mark.parametrize("kept", [6, 12, len(OTHER) - 1])
def test_a_secret_cut_by_the_error_body_limit_is_redacted(kept: int) -> None:
    redactor = RedactingFilter([SECRET, OTHER])
    body = ("x" * (200 - kept - 1) + " " + OTHER).encode()
    message = f"samsara kept failing (HTTP 500: {Response(500, {}, body).text()})"
    assert OTHER[:kept] in message  # what the 200-byte limit leaves of it
    redacted = redactor.redact(message)
    assert OTHER[:kept] not in redacted
    assert redacted.endswith(f"{REDACTED}\u2026)")


def test_ordinary_text_that_starts_like_a_secret_is_kept() -> None:
    redactor = RedactingFilter([OTHER])
    # Not at a cut: a word that happens to begin like the secret stays.
    assert redactor.redact("api-key-0 is not valid here") == "api-key-0 is not valid here"
    assert redactor.redact("short api-k") == "short api-k"  # < 6 characters of it
