"""PLACEHOLDER — replaced by the responses routes."""

from fastapi import APIRouter

router = APIRouter()
