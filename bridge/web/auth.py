"""Who may look and who may command: the configured token or password, and sessions.

A person logs in once (the password, or the token from a link such as the
demo's `#token=...`) and gets a random session id; the page keeps it in the
tab's sessionStorage and sends it as `Authorization: Bearer <id>` on every API
call and as the first message on its WebSocket. Scripts may send the token
itself as the bearer. Nothing rides on a cookie, so a page on another site
cannot make a browser send a command with the user's rights (CSRF): it can
neither read the session id nor set the header without a CORS preflight,
which this server never grants.

Failed attempts are throttled per peer (and in total), so the secret cannot be
guessed at line rate; every comparison is constant-time.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.config import HttpConfig

#: Failed logins a peer may make per window, and all peers together.
PEER_FAILURES = 10
TOTAL_FAILURES = 100
FAILURE_WINDOW_S = 60.0
MAX_SESSIONS = 1000


@dataclass(slots=True)
class _Failures:
    window_start: float = 0.0
    count: int = 0


@dataclass
class Auth:
    """The credentials of `http:` and the sessions handed out against them."""

    config: HttpConfig
    clock: Callable[[], float] = time.monotonic
    _sessions: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _failures: dict[str, _Failures] = field(default_factory=dict)
    _total: _Failures = field(default_factory=_Failures)

    @property
    def can_login(self) -> bool:
        return self.config.token is not None or self.config.password is not None

    @property
    def public(self) -> bool:
        """Viewing needs no login."""
        return self.config.dashboard_public

    # --- secrets -----------------------------------------------------------------
    def _matches(self, given: str, kind: str) -> bool:
        secret = self.config.token if kind == "token" else self.config.password
        if secret is None:
            return False
        return hmac.compare_digest(given.encode(), secret.get_secret_value().encode())

    def is_token(self, given: str) -> bool:
        return self._matches(given, "token")

    # --- throttling --------------------------------------------------------------
    def _window(self, failures: _Failures) -> _Failures:
        now = self.clock()
        if now - failures.window_start >= FAILURE_WINDOW_S:
            failures.window_start, failures.count = now, 0
        return failures

    def throttled(self, peer: str) -> float | None:
        """Seconds until `peer` may try again, or None when it may now."""
        for failures, limit in (
            (self._failures.get(peer), PEER_FAILURES),
            (self._total, TOTAL_FAILURES),
        ):
            if failures is not None and self._window(failures).count >= limit:
                return max(1.0, FAILURE_WINDOW_S - (self.clock() - failures.window_start))
        return None

    def failed(self, peer: str) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()  # a flood of peers: forget, the total still counts
        self._window(self._failures.setdefault(peer, _Failures())).count += 1
        self._window(self._total).count += 1

    # --- sessions ----------------------------------------------------------------
    def login(self, kind: str, given: str) -> str | None:
        """A new session id for the right token or password, else None."""
        if kind not in ("token", "password") or not self._matches(given, kind):
            return None
        now = self.clock()
        for sid, expires in list(self._sessions.items()):
            if expires <= now:
                del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = now + self.config.session_hours * 3600
        return sid

    def logout(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def valid(self, bearer: str | None) -> bool:
        """A live session id, or the configured token itself."""
        if not bearer:
            return False
        expires = self._sessions.get(bearer)
        if expires is not None:
            if expires > self.clock():
                return True
            del self._sessions[bearer]
            return False
        return self.is_token(bearer)

    def session_left(self, bearer: str) -> float | None:
        expires = self._sessions.get(bearer)
        return None if expires is None else max(0.0, expires - self.clock())


def bearer_of(header: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <x>` header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
