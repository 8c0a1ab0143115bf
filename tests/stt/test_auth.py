"""Every auth carrier on the live socket, and the pre-accept refusal (HTTP 403) without a valid key."""

from __future__ import annotations

import pytest
import websockets

from .conftest import CLOSE, fixture_pcm, run_session, ws_url

KEY = "secret-key"


@pytest.fixture
def keyed(sphinx_server) -> str:
    return sphinx_server({"auth.api_keys": KEY})


@pytest.mark.parametrize("carrier", ["token-header", "bearer-header", "x-api-key", "subprotocol", "token-query",
                                     "api_key-query"])
async def test_each_carrier_is_accepted(keyed: str, carrier: str) -> None:
    headers, subprotocols, query = [], None, {}
    if carrier == "token-header":
        headers = [("Authorization", f"Token {KEY}")]
    elif carrier == "bearer-header":
        headers = [("Authorization", f"Bearer {KEY}")]
    elif carrier == "x-api-key":
        headers = [("X-API-Key", KEY)]
    elif carrier == "subprotocol":
        subprotocols = ["token", KEY]
    elif carrier == "token-query":
        query = {"token": KEY}
    else:
        query = {"api_key": KEY}
    pcm = fixture_pcm("garden")[:32000]
    session = await run_session(ws_url(keyed, **query), [pcm, CLOSE], headers=headers, subprotocols=subprotocols)
    assert session.close_code == 1000 and session.frames[0]["type"] == "Metadata"
    # browsers drop a socket whose accepted subprotocol is not the one they offered first
    assert session.subprotocol == ("token" if carrier == "subprotocol" else None)


@pytest.mark.parametrize("headers", [[], [("Authorization", "Token wrong")], [("Authorization", "Basic " + KEY)]])
async def test_missing_or_wrong_key_is_refused_before_accept(keyed: str, headers) -> None:
    for path in ("/v1/listen/dg", "/v1/listen"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url(keyed, path), additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403


async def test_wrong_subprotocol_key_is_refused(keyed: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url(keyed), subprotocols=["token", "nope"]):
            pass
    assert refused.value.response.status_code == 403
