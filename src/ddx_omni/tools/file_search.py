"""The `file_search` built-in Responses tool: the model calls `file_search {"queries": [...]}`, the vector stores
named by the request are searched (hybrid, files/vector_stores.py), and the answer cites the files it used.

Item: `file_search_call {id, queries, status, results}`, `results` kept only when the request's `include` has
`file_search_call.results` (OpenAI's rule); events `response.file_search_call.in_progress/searching/completed`.
Citations: a `file_citation {file_id, filename, index}` after each place the answer names a file it was shown
(by filename), and, when it names none, one per file of the best results at the end of the answer (up to
three), so an answer built on search results always points at its sources.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..core.settings import FilesSettings
from ..files import filters as flt
from ..files.schemas import MAX_RESULTS, RankingOptions, new_id
from ..files.vector_stores import VectorStores
from ..responses.schemas import bad_request
from .base import FunctionSpec, ReplayedCall, ToolRequestContext

INCLUDE_RESULTS = "file_search_call.results"
FALLBACK_CITATIONS = 3
# Bounded so that a constrained decoder (forced tool_choice) always reaches the end of the call.
PARAMETERS = {"type": "object", "properties": {"queries": {
    "type": "array", "items": {"type": "string", "maxLength": 200}, "minItems": 1, "maxItems": 4,
    "description": "One or more search queries (keywords or questions) over the user's files"}},
    "required": ["queries"], "additionalProperties": False}
DESCRIPTION = ("Search the user's uploaded files. Returns the most relevant passages with their file names; "
               "cite a passage's file name when you use it.")


@dataclass
class FileSearchKind:
    """`{"type": "file_search", "vector_store_ids", "max_num_results", "filters", "ranking_options"}`."""

    stores: VectorStores
    config: FilesSettings
    type: str = "file_search"
    item_types: tuple[str, ...] = ("file_search_call",)

    async def bind(self, spec: dict[str, Any], ctx: ToolRequestContext) -> BoundFileSearch:
        ids = spec.get("vector_store_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise bad_request("tools.file_search.vector_store_ids: a non-empty list of vector store ids is required",
                              "tools.vector_store_ids")
        for vector_store_id in ids:
            await self.stores.get(vector_store_id)  # 404 for an unknown store, before anything streams
        limit = spec.get("max_num_results", self.config.max_results_default)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_RESULTS:
            raise bad_request(f"tools.file_search.max_num_results: must be from 1 to {MAX_RESULTS}",
                              "tools.max_num_results")
        filters = flt.validate(spec["filters"], "tools.filters") if spec.get("filters") else None
        try:
            ranking = RankingOptions.model_validate(spec.get("ranking_options") or {})
        except ValueError as exc:
            raise bad_request(f"tools.file_search.ranking_options: {exc}", "tools.ranking_options") from None
        return BoundFileSearch(self.stores, ids, limit, filters, ranking, INCLUDE_RESULTS in ctx.include)

    def replay(self, items: list[dict[str, Any]]) -> dict[str, ReplayedCall]:
        """Earlier searches as the model saw them; without kept results it learns that it searched, not what."""
        replayed = {}
        for item in items:
            if item.get("type") != "file_search_call":
                continue
            results = item.get("results")
            output = (format_results(results) if results is not None
                      else "(the results of this earlier search were not kept; search again if you need them)")
            replayed[item["id"]] = ReplayedCall("file_search", json.dumps({"queries": item.get("queries", [])}),
                                                output)
        return replayed


@dataclass
class BoundFileSearch:
    stores: VectorStores
    vector_store_ids: list[str]
    limit: int
    filters: dict[str, Any] | None
    ranking: RankingOptions
    keep_results: bool
    shown: list[dict[str, Any]] = field(default_factory=list)  # every result the model read this turn

    def functions(self) -> list[FunctionSpec]:
        return [FunctionSpec("file_search", DESCRIPTION, PARAMETERS)]

    def new_item(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG002 - one function
        return {"id": new_id("fs"), "type": "file_search_call", "status": "in_progress",
                "queries": _queries(arguments), "results": None}

    async def run(self, item: dict[str, Any], name: str, arguments: dict[str, Any],  # noqa: ARG002 - in the item
                  emit: Any) -> str:
        emit("response.file_search_call.in_progress")
        emit("response.file_search_call.searching")
        item["status"] = "searching"
        queries = item["queries"]
        if not queries:
            item["status"] = "failed"
            return "file_search failed: give at least one non-empty query in `queries`"
        try:
            results = await self.stores.search(self.vector_store_ids, queries, filters=self.filters,
                                               limit=self.limit, ranking=self.ranking)
        except Exception as exc:  # reported to the model and in the item, never raised into the turn
            item["status"] = "failed"
            return f"file_search failed: {getattr(exc, 'message', None) or exc}"
        self.shown += results
        item["status"] = "completed"
        if self.keep_results:
            item["results"] = [{"file_id": r["file_id"], "filename": r["filename"], "score": r["score"],
                                "text": r["text"], "attributes": r["attributes"]} for r in results]
        emit("response.file_search_call.completed")
        return format_results(results)

    def annotate(self, text: str) -> list[dict[str, Any]]:
        files = {r["file_id"]: r["filename"] for r in self.shown}
        notes = [{"type": "file_citation", "file_id": file_id, "filename": filename, "index": match.end()}
                 for file_id, filename in files.items() if filename
                 for match in re.finditer(re.escape(filename), text)]
        if not notes and text.strip():
            best = list(dict.fromkeys(r["file_id"] for r in self.shown))[:FALLBACK_CITATIONS]
            notes = [{"type": "file_citation", "file_id": f, "filename": files[f], "index": len(text)} for f in best]
        return sorted(notes, key=lambda n: (n["index"], n["filename"]))


def _queries(arguments: dict[str, Any]) -> list[str]:
    raw = arguments.get("queries", arguments.get("query"))
    if isinstance(raw, str):
        raw = [raw]
    return [q.strip() for q in raw if isinstance(q, str) and q.strip()] if isinstance(raw, list) else []


def format_results(results: list[dict[str, Any]]) -> str:
    """What the model reads: each passage with its file name, best first."""
    if not results:
        return "No passage of the searched files matches these queries."
    parts = [f"[{n}] file: {r['filename']} (file_id {r['file_id']}, score {r['score']:.3f})\n{r['text']}"
             for n, r in enumerate(results, 1)]
    return "Passages found in the user's files, best first:\n\n" + "\n\n".join(parts)
