"""Request ids: the client's when sane, else a new uuid4 (core.gateway sets it on the response and the logs)."""

from __future__ import annotations

import os

MAX_ID_LENGTH = 128


def sane_request_id(value: str | None) -> str:
    if value and len(value) <= MAX_ID_LENGTH and value.isprintable() and value.isascii() and value.strip() == value:
        return value
    return new_request_id()


def new_request_id() -> str:
    """A random (version 4) UUID in its usual form: what str(uuid.uuid4()) gives, at half its cost — it is made on
    every request that brings no id of its own."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
