"""PLACEHOLDER — replaced by the welcome page."""

from fastapi import APIRouter

router = APIRouter()
