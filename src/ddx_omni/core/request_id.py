"""Request ids: the client's when sane, else a new uuid4 (core.gateway sets it on the response and the logs)."""

from __future__ import annotations

import uuid

MAX_ID_LENGTH = 128


def sane_request_id(value: str | None) -> str:
    if value and len(value) <= MAX_ID_LENGTH and value.isprintable() and value.isascii() and value.strip() == value:
        return value
    return str(uuid.uuid4())
