"""The peer of bench_http.py: a bare FastAPI app answering POST /v1/chat/completions with fixed bytes."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

BODY = sys.argv[2].encode() if len(sys.argv) > 2 else b"{}"
app = FastAPI()


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    await request.body()  # read the body, as a real route must
    return Response(BODY, media_type="application/json")


if __name__ == "__main__":
    # the same uvicorn settings as `ddx-omni serve` (lifecycle.run_server)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, log_level=sys.argv[3],
                ws_max_size=16 * 1024 * 1024)
