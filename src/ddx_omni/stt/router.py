"""PLACEHOLDER — replaced by the stt routes."""

from fastapi import APIRouter

http_router = APIRouter()
ws_router = APIRouter()
