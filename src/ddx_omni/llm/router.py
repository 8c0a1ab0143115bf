"""PLACEHOLDER — replaced by the llm routes."""

from fastapi import APIRouter

public_router = APIRouter()
router = APIRouter()
