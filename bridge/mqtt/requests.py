"""Bridge-level requests: `fleet/bridge/request/<command>` in, one response out.

Every request is answered exactly once on `fleet/bridge/response/<command>` with
`{"status": "ok"|"error", "data": ..., "error": ..., "transaction": ...}`. A
payload that is not what the command takes is answered with an error naming the
field; nothing else happens. (The per-vehicle command channel builds on this.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Requests are small JSON objects; anything bigger is refused unread.
MAX_PAYLOAD = 64 * 1024
MAX_TRANSACTION = 200
# Commands are flat objects (a snapshot's options are the deepest, at 2 levels).
# Deeper JSON is refused before it is parsed: the standard library's parser
# raises RecursionError somewhere near 1,000 levels, which no caller expects.
MAX_DEPTH = 16

# A JSON string (skipped whole, brackets inside it do not count), a bracket, or
# the punctuation between members.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{},:]')
_DECODER = json.JSONDecoder()


class RequestError(Exception):
    """A request that cannot be carried out, with the field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    transaction: str | None
    body: dict[str, Any]


def parse_request(command: str, payload: bytes) -> Request:
    """Decode and check the envelope; raises `RequestError`.

    The transaction id is read even from a request that is otherwise wrong, so
    that its error response can carry it (see `transaction_of`)."""
    if len(payload) > MAX_PAYLOAD:
        raise RequestError("payload", f"too large ({len(payload)} bytes, at most {MAX_PAYLOAD})")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("payload", "not UTF-8 text") from None
    body: Any = loads(text) if text.strip() else {}
    if not isinstance(body, dict):
        raise RequestError("payload", "must be a JSON object")
    transaction = body.pop("transaction", None)
    if transaction is not None and (
        not isinstance(transaction, str | int) or len(str(transaction)) > MAX_TRANSACTION
    ):
        raise RequestError(
            "transaction", f"must be a string of at most {MAX_TRANSACTION} characters"
        )
    return Request(command, None if transaction is None else str(transaction), body)


def nesting(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (strings skipped)."""
    depth = deepest = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _shallow_transaction(text: str) -> Any:
    """The value of the top-level `transaction` member of a JSON object too deep
    to parse whole (a string or a number), read without parsing the rest."""
    depth = 0
    previous = ""
    tokens = _TOKEN.finditer(text)
    for match in tokens:
        token = match.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
        elif depth == 1 and previous in ("{", ",") and token == '"transaction"':
            colon = next(tokens, None)
            if colon is None or colon.group() != ":":
                return None
            start = len(text) - len(text[colon.end() :].lstrip())
            if start < len(text) and (text[start] == '"' or text[start] in "-0123456789"):
                try:
                    return _DECODER.raw_decode(text, start)[0]
                except json.JSONDecodeError:
                    return None
            return None
        previous = token
    return None


def loads(text: str) -> Any:
    """JSON of a request, within MAX_DEPTH; raises `RequestError` naming `payload`."""
    if nesting(text) > MAX_DEPTH:
        raise RequestError("payload", f"nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RequestError("payload", f"not valid JSON ({err.msg} at {err.pos})") from None
    except RecursionError:  # not reached within MAX_DEPTH; the net under it
        raise RequestError("payload", "nested too deeply") from None


def transaction_of(payload: bytes) -> str | None:
    """The transaction id of a request, if one can be read at all."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        text = payload.decode("utf-8")
        body = loads(text)
    except UnicodeDecodeError:
        return None
    except RequestError:
        body = {"transaction": _shallow_transaction(text)}
    transaction = body.get("transaction") if isinstance(body, dict) else None
    if isinstance(transaction, str | int) and len(str(transaction)) <= MAX_TRANSACTION:
        return str(transaction)
    return None


def ok(transaction: str | None, data: Any) -> dict[str, Any]:
    return {"status": "ok", "data": data, "error": None, "transaction": transaction}


def error(transaction: str | None, message: str, **details: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "status": "error",
        "data": details or None,
        "error": message,
        "transaction": transaction,
    }
    return response


def take_str(body: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = body.pop(field, None)
    if value is None:
        if required:
            raise RequestError(field, "field required")
        return None
    if not isinstance(value, str) or not value:
        raise RequestError(field, "must be a non-empty string")
    return value


def no_extra(body: dict[str, Any]) -> None:
    if body:
        raise RequestError(sorted(body)[0], "unknown field")
