"""Routes of the containers API (/v1/containers and their files): parse, call the containers component, shape.

What needs a container's process or files is answered by the replica that runs it: `owned` routes relay the
request there, as it came, when that is another live replica (a shared database; see service.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from ..core.errors import ApiError
from ..core.paging import page_args
from ..responses.schemas import bad_request
from .schemas import AddFileRequest, CreateContainerRequest, ExecuteRequest
from .service import RELAYED, ContainersService

router = APIRouter(prefix="/v1", tags=["containers"])


def _service(request: Request) -> ContainersService:
    service = getattr(request.app.state, "code_interpreter", None)
    if service is None:
        raise ApiError("The code interpreter is not part of this server", status=503, code="unavailable")
    return service


class _OwnerRoute(APIRoute):
    """A route of one container's process or files: relayed to the replica that runs it, if another one does."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        local = super().get_route_handler()

        async def handler(request: Request) -> Response:
            container_id = request.path_params["container_id"]
            if not request.headers.get(RELAYED):  # relayed once at most: the owner answers (or says 409)
                service = _service(request)
                owner = await service.owner(container_id)
                if owner is not None:
                    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    status, body, headers = await service.relay(
                        owner, request.method, path, await request.body(), request.headers.get("content-type"))
                    return Response(body, status_code=status, headers=headers)
            return await local(request)

        return handler


owned = APIRouter(route_class=_OwnerRoute)


@router.post("/containers", summary="Create a container (a sandboxed Python with its own /mnt/data)")
async def create_container(body: CreateContainerRequest, request: Request) -> dict[str, Any]:
    minutes = body.expires_after.minutes if body.expires_after else None
    return await _service(request).create(body.name, body.file_ids, minutes, body.memory_limit)


@router.get("/containers", summary="List containers")
async def list_containers(request: Request, after: str | None = None, limit: int = 20, order: str = "desc",
                          name: str | None = None) -> dict[str, Any]:
    return await _service(request).list_containers(after, name=name, **page_args(limit, order))


@router.get("/containers/{container_id}", summary="Retrieve a container")
async def get_container(container_id: str, request: Request) -> dict[str, Any]:
    return await _service(request).get(container_id)


@owned.delete("/containers/{container_id}", summary="Delete a container (its process and files)")
async def delete_container(container_id: str, request: Request) -> dict[str, Any]:
    return await _service(request).delete(container_id)


@owned.post("/containers/{container_id}/files",
             summary="Add a file to a container: multipart `file`, or JSON {file_id} of an uploaded file",
             openapi_extra={"requestBody": {"content": {
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}, "file_id": {"type": "string"}}}},
                 "application/json": {"schema": AddFileRequest.model_json_schema()}}}})
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


@owned.get("/containers/{container_id}/files", summary="List a container's files")
async def list_files(container_id: str, request: Request, after: str | None = None, limit: int = 20,
                     order: str = "desc") -> dict[str, Any]:
    return await _service(request).list_files(container_id, after, **page_args(limit, order))


@owned.get("/containers/{container_id}/files/{file_id}", summary="Retrieve a container file")
async def get_file(container_id: str, file_id: str, request: Request) -> dict[str, Any]:
    return await _service(request).get_file(container_id, file_id)


@owned.get("/containers/{container_id}/files/{file_id}/content", summary="Download a container file's bytes",
            response_class=Response)
async def file_content(container_id: str, file_id: str, request: Request) -> Response:
    filename, data = await _service(request).file_content(container_id, file_id)
    safe = filename.encode("ascii", "replace").decode().replace('"', "_")
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})


@owned.delete("/containers/{container_id}/files/{file_id}", summary="Delete a container file")
async def delete_file(container_id: str, file_id: str, request: Request) -> dict[str, Any]:
    return await _service(request).delete_file(container_id, file_id)


@owned.post("/containers/{container_id}/execute", include_in_schema=False)
async def execute(container_id: str, body: ExecuteRequest, request: Request) -> dict[str, Any]:
    """Replica to replica: the code interpreter of a response on another replica runs code in a container here."""
    execution = await _service(request).execute(container_id, body.code, relayed=bool(request.headers.get(RELAYED)))
    return dataclasses.asdict(execution)


router.include_router(owned)  # after their routes: include_router copies the routes it finds
