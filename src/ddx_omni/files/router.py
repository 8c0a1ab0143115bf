"""Routes of /v1/files and /v1/vector_stores (files, file_batches, search): parse, call the service, shape."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from ..core.paging import page_args
from ..responses.schemas import bad_request
from .schemas import (
    MAX_RESULTS,
    AttachFileRequest,
    CreateBatchRequest,
    CreateVectorStoreRequest,
    SearchRequest,
    UpdateFileAttributesRequest,
    UpdateVectorStoreRequest,
    now,
)
from .service import FilesService
from .vector_stores import VectorStores

router = APIRouter(prefix="/v1", tags=["files"])

# The openai SDK's *_and_poll helpers wait this long between polls (its own default is a whole second).
POLL_HEADERS = {"openai-poll-after-ms": "100"}


def _files(request: Request) -> FilesService:
    return request.app.state.files


def _stores(request: Request) -> VectorStores:
    return request.app.state.files.vector_stores


# ---- /v1/files ------------------------------------------------------------------------------------------------
@router.post("/files", summary="Upload a file (multipart: file, purpose, expires_after[anchor|seconds])")
async def upload_file(request: Request, file: UploadFile, purpose: str = Form(...),
                      expires_after_anchor: str | None = Form(None, alias="expires_after[anchor]"),
                      expires_after_seconds: int | None = Form(None, alias="expires_after[seconds]")
                      ) -> dict[str, Any]:
    size = file.size if file.size is not None else 0
    if size == 0:
        raise bad_request("file: the uploaded file is empty", "file", code="empty_file")
    expires_at = None
    if expires_after_seconds is not None or expires_after_anchor is not None:
        if expires_after_anchor != "created_at" or not 3600 <= (expires_after_seconds or 0) <= 2592000:
            raise bad_request("expires_after: anchor must be 'created_at' and seconds from 3600 to 2592000",
                              "expires_after")
        expires_at = now() + int(expires_after_seconds or 0)
    return await _files(request).create_from_stream(file.filename or "upload", file.file, size, purpose, expires_at)


@router.get("/files", summary="List files")
async def list_files(request: Request, purpose: str | None = None, after: str | None = None, limit: int = 10000,
                     order: str = "desc") -> dict[str, Any]:
    return await _files(request).list_files(purpose=purpose, after=after, **page_args(limit, order, 10000))


@router.get("/files/{file_id}", summary="Retrieve a file's metadata")
async def get_file(file_id: str, request: Request) -> dict[str, Any]:
    return await _files(request).get(file_id)


@router.get("/files/{file_id}/content", summary="The file's bytes")
async def file_content(file_id: str, request: Request) -> FileResponse:
    service = _files(request)
    meta = await service.get(file_id)
    media = mimetypes.guess_type(meta["filename"])[0] or "application/octet-stream"
    disposition = f"attachment; filename*=UTF-8''{quote(meta['filename'])}"
    return FileResponse(service.path(file_id), media_type=media, headers={"Content-Disposition": disposition})


@router.delete("/files/{file_id}", summary="Delete a file (and its chunks in every vector store)")
async def delete_file(file_id: str, request: Request) -> dict[str, Any]:
    return await _files(request).delete(file_id)


# ---- /v1/vector_stores ------------------------------------------------------------------------------------------
@router.post("/vector_stores", summary="Create a vector store")
async def create_store(body: CreateVectorStoreRequest, request: Request) -> dict[str, Any]:
    return await _stores(request).create(body)


@router.get("/vector_stores", summary="List vector stores")
async def list_stores(request: Request, after: str | None = None, before: str | None = None, limit: int = 20,
                      order: str = "desc") -> dict[str, Any]:
    return await _stores(request).list_stores(after=after, before=before, **page_args(limit, order))


@router.get("/vector_stores/{vector_store_id}", summary="Retrieve a vector store")
async def get_store(vector_store_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _stores(request).get(vector_store_id), headers=POLL_HEADERS)


@router.post("/vector_stores/{vector_store_id}", summary="Modify a vector store (name, metadata, expires_after)")
async def update_store(vector_store_id: str, body: UpdateVectorStoreRequest, request: Request) -> dict[str, Any]:
    return await _stores(request).update(vector_store_id, body)


@router.delete("/vector_stores/{vector_store_id}", summary="Delete a vector store (its files stay uploaded)")
async def delete_store(vector_store_id: str, request: Request) -> dict[str, Any]:
    return await _stores(request).delete(vector_store_id)


@router.post("/vector_stores/{vector_store_id}/search", summary="Search a vector store (BM25 + dense, fused)")
async def search(vector_store_id: str, body: SearchRequest, request: Request) -> dict[str, Any]:
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    stores = _stores(request)
    if body.rewrite_query:  # no LLM rewrite here: the query is reduced to its key terms (documented)
        from .retrieval import query_terms

        queries = [" ".join(query_terms(q)) or q for q in queries]
    results = await stores.search([vector_store_id], queries, filters=body.filters,
                                  limit=min(body.max_num_results, MAX_RESULTS), ranking=body.ranking_options)
    data = [{"file_id": r["file_id"], "filename": r["filename"], "score": r["score"], "attributes": r["attributes"],
             "content": [{"type": "text", "text": r["text"]}]} for r in results]
    return {"object": "vector_store.search_results.page", "search_query": queries, "data": data,
            "has_more": False, "next_page": None}


# ---- /v1/vector_stores/{id}/files ------------------------------------------------------------------------------
@router.post("/vector_stores/{vector_store_id}/files", summary="Add a file to a vector store (ingested in background)")
async def attach_file(vector_store_id: str, body: AttachFileRequest, request: Request) -> dict[str, Any]:
    return await _stores(request).attach(vector_store_id, body.file_id, body.attributes, body.chunking_strategy)


@router.get("/vector_stores/{vector_store_id}/files", summary="List a vector store's files")
async def list_store_files(vector_store_id: str, request: Request, after: str | None = None,
                           before: str | None = None, limit: int = 20, order: str = "desc",
                           filter: str | None = None) -> dict[str, Any]:
    return await _stores(request).list_files(vector_store_id, status=_status(filter), after=after, before=before,
                                             **page_args(limit, order))


@router.get("/vector_stores/{vector_store_id}/files/{file_id}", summary="Retrieve a vector store file")
async def get_store_file(vector_store_id: str, file_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _stores(request).get_file(vector_store_id, file_id), headers=POLL_HEADERS)


@router.post("/vector_stores/{vector_store_id}/files/{file_id}", summary="Update a vector store file's attributes")
async def update_store_file(vector_store_id: str, file_id: str, body: UpdateFileAttributesRequest,
                            request: Request) -> dict[str, Any]:
    return await _stores(request).update_file(vector_store_id, file_id, body.attributes)


@router.delete("/vector_stores/{vector_store_id}/files/{file_id}", summary="Remove a file from a vector store")
async def delete_store_file(vector_store_id: str, file_id: str, request: Request) -> dict[str, Any]:
    return await _stores(request).detach(vector_store_id, file_id)


@router.get("/vector_stores/{vector_store_id}/files/{file_id}/content", summary="A vector store file's parsed text")
async def store_file_content(vector_store_id: str, file_id: str, request: Request) -> dict[str, Any]:
    return await _stores(request).file_content(vector_store_id, file_id)


# ---- /v1/vector_stores/{id}/file_batches ---------------------------------------------------------------------
@router.post("/vector_stores/{vector_store_id}/file_batches", summary="Add several files at once")
async def create_batch(vector_store_id: str, body: CreateBatchRequest, request: Request) -> dict[str, Any]:
    return await _stores(request).create_batch(vector_store_id, body)


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}", summary="Retrieve a file batch")
async def get_batch(vector_store_id: str, batch_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _stores(request).get_batch(vector_store_id, batch_id), headers=POLL_HEADERS)


@router.post("/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel", summary="Cancel a file batch")
async def cancel_batch(vector_store_id: str, batch_id: str, request: Request) -> dict[str, Any]:
    return await _stores(request).cancel_batch(vector_store_id, batch_id)


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}/files", summary="List a file batch's files")
async def list_batch_files(vector_store_id: str, batch_id: str, request: Request, after: str | None = None,
                           before: str | None = None, limit: int = 20, order: str = "desc",
                           filter: str | None = None) -> dict[str, Any]:
    stores = _stores(request)
    await stores.get_batch(vector_store_id, batch_id)
    return await stores.list_files(vector_store_id, status=_status(filter), batch_id=batch_id, after=after,
                                   before=before, **page_args(limit, order))


def _status(value: str | None) -> str | None:
    if value is not None and value not in ("in_progress", "completed", "failed", "cancelled"):
        raise bad_request("filter: must be one of in_progress, completed, failed, cancelled", "filter")
    return value
