"""Opaque pagination cursors for the provider simulators.

A cursor carries a few integers, the kind of listing it belongs to, a generation
(bumped to expire every cursor handed out so far) and a nonce of this simulator
instance, so that a cursor kept by a client across a simulator restart is refused
like an expired one instead of silently meaning something else.
"""

from __future__ import annotations

import base64
import binascii
import os


class CursorError(ValueError):
    """The cursor is garbage, from another listing, or expired."""


class CursorCodec:
    def __init__(self, nonce: str | None = None) -> None:
        self.nonce = nonce if nonce is not None else os.urandom(4).hex()
        self.generation = 0

    def expire_all(self) -> None:
        self.generation += 1

    def encode(self, kind: str, *fields: int) -> str:
        raw = ".".join((self.nonce, str(self.generation), kind, *map(str, fields)))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def decode(self, text: str, kind: str, count: int) -> tuple[int, ...]:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            nonce, generation, found_kind, *fields = raw.split(".")
            values = tuple(int(value) for value in fields)
        except (binascii.Error, ValueError):
            raise CursorError("unreadable cursor") from None
        if (
            nonce != self.nonce
            or generation != str(self.generation)
            or found_kind != kind
            or len(values) != count
        ):
            raise CursorError("expired or foreign cursor")
        return values
