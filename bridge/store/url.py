"""A PostgreSQL URL as it may be shown: never with its password.

The standard library only (the config imports it to collect the password among
the secrets the log filter hides, and psycopg may not be installed).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")
_HIDDEN = "***"


def url_passwords(url: str) -> list[str]:
    """The password of `url` (in its user part or a `password=` parameter), as
    written and percent-decoded: what a log line could show."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [value for key, value in parse_qsl(parts.query) if key == "password"]
    except ValueError:
        return []
    secrets: list[str] = []
    for value in found:
        for form in (value, unquote(value)):
            if form and form not in secrets:
                secrets.append(form)
    return secrets


def redact_url(url: str) -> str:
    """`postgresql://user:***@host:port/db`: the URL with its password hidden."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:{_HIDDEN}@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, _HIDDEN if k == "password" else v) for k, v in pairs], safe="*")
        redacted = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<an unreadable PostgreSQL URL>"
    for secret in url_passwords(url):
        redacted = redacted.replace(secret, _HIDDEN)
    return redacted


def url_where(url: str) -> str:
    """`host:port` of `url` (what an error names instead of the whole URL)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "<an unreadable PostgreSQL URL>"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def scrub(text: str, url: str) -> str:
    """`text` (an error's message) with any password of `url` hidden."""
    for secret in url_passwords(url):
        text = text.replace(secret, _HIDDEN)
    return text
