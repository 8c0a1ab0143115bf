"""Routes of the containers API (/v1/containers and their files): parse, call the containers component, shape."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from ..core.errors import ApiError
from ..responses.schemas import bad_request
from .schemas import AddFileRequest, CreateContainerRequest
from .service import ContainersService

router = APIRouter(prefix="/v1", tags=["containers"])


def _service(request: Request) -> ContainersService:
    service = getattr(request.app.state, "code_interpreter", None)
    if service is None:
        raise ApiError("The code interpreter is not part of this server", status=503, code="unavailable")
    return service


def _page(limit: int, order: str) -> dict[str, Any]:
    if not 1 <= limit <= 100:
        raise bad_request("limit: must be between 1 and 100", "limit")
    if order not in ("asc", "desc"):
        raise bad_request("order: must be 'asc' or 'desc'", "order")
    return {"limit": limit, "order": order}


@router.post("/containers", summary="Create a container (a sandboxed Python with its own /mnt/data)")
async def create_container(body: CreateContainerRequest, request: Request) -> dict[str, Any]:
    minutes = body.expires_after.minutes if body.expires_after else None
    return await _service(request).create(body.name, body.file_ids, minutes, body.memory_limit)


@router.get("/containers", summary="List containers")
async def list_containers(request: Request, after: str | None = None, limit: int = 20, order: str = "desc",
                          name: str | None = None) -> dict[str, Any]:
    return await _service(request).list_containers(after, name=name, **_page(limit, order))


@router.get("/containers/{container_id}", summary="Retrieve a container")
async def get_container(container_id: str, request: Request) -> dict[str, Any]:
    return await _service(request).get(container_id)


@router.delete("/containers/{container_id}", summary="Delete a container (its process and files)")
async def delete_container(container_id: str, request: Request) -> dict[str, Any]:
    return await _service(request).delete(container_id)


@router.post("/containers/{container_id}/files",
             summary="Add a file to a container: multipart `file`, or JSON {file_id} of an uploaded file",
             openapi_extra={"requestBody": {"content": {
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}, "file_id": {"type": "string"}}}},
                 "application/json": {"schema": {"$ref": "#/components/schemas/AddFileRequest"}}}}})
async def add_file(container_id: str, request: Request) -> dict[str, Any]:
    service = _service(request)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is not None and not isinstance(upload, str):
            data = await upload.read()
            return await service.add_file(container_id, upload.filename or "file", data)
        file_id = form.get("file_id")
        if isinstance(file_id, str) and file_id:
            return await service.add_file_id(container_id, file_id)
        raise bad_request("file: a multipart `file` or a `file_id` is required", "file")
    return await service.add_file_id(container_id, _json_body(await request.body()).file_id)


def _json_body(raw: bytes) -> AddFileRequest:
    try:
        return AddFileRequest.model_validate(json.loads(raw or b"{}"))
    except (ValueError, ValidationError):
        raise bad_request("file_id: a JSON body {\"file_id\": ...} or a multipart `file` is required",
                          "file_id") from None


@router.get("/containers/{container_id}/files", summary="List a container's files")
async def list_files(container_id: str, request: Request, after: str | None = None, limit: int = 20,
                     order: str = "desc") -> dict[str, Any]:
    return await _service(request).list_files(container_id, after, **_page(limit, order))


@router.get("/containers/{container_id}/files/{file_id}", summary="Retrieve a container file")
async def get_file(container_id: str, file_id: str, request: Request) -> dict[str, Any]:
    return await _service(request).get_file(container_id, file_id)


@router.get("/containers/{container_id}/files/{file_id}/content", summary="Download a container file's bytes",
            response_class=Response)
async def file_content(container_id: str, file_id: str, request: Request) -> Response:
    filename, data = await _service(request).file_content(container_id, file_id)
    safe = filename.encode("ascii", "replace").decode().replace('"', "_")
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})


@router.delete("/containers/{container_id}/files/{file_id}", summary="Delete a container file")
async def delete_file(container_id: str, file_id: str, request: Request) -> dict[str, Any]:
    return await _service(request).delete_file(container_id, file_id)
