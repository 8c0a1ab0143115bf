"""One Prometheus registry for the whole service, its metrics, and the /metrics route."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter("ddx_http_requests_total", "HTTP requests answered",
                        ["method", "route", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram("ddx_http_request_duration_seconds", "Time to the end of the response body",
                         ["method", "route", "status"], registry=REGISTRY,
                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
HTTP_IN_FLIGHT = Gauge("ddx_http_requests_in_flight", "HTTP requests being served", registry=REGISTRY)

LLM_TOKENS = Counter("ddx_llm_tokens_generated_total", "Completion tokens generated", ["model"], registry=REGISTRY)
LLM_PROMPT_TOKENS = Counter("ddx_llm_prompt_tokens_total", "Prompt tokens processed", ["model"], registry=REGISTRY)
LLM_PROMPT_RENDERS = Counter("ddx_llm_prompt_renders_total", "Chat templates rendered and tokenized (one per request "
                             "when the prompt pipeline's tokens are reused)", ["model"], registry=REGISTRY)
LLM_TTFT = Histogram("ddx_llm_time_to_first_token_seconds", "Time from request to first generated token",
                     ["model"], registry=REGISTRY,
                     buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
LLM_TPS = Histogram("ddx_llm_generation_tokens_per_second", "Decode speed of each generation",
                    ["model"], registry=REGISTRY, buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
LLM_BATCH_SIZE = Histogram("ddx_llm_batch_size", "Requests decoded together, per batched decode step", ["model"],
                           registry=REGISTRY, buckets=(1, 2, 4, 8, 16, 32, 64))
LLM_LOAD_SECONDS = Histogram("ddx_llm_model_load_seconds", "Model load time", ["model"], registry=REGISTRY,
                             buckets=(.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300))

STT_SESSIONS_ACTIVE = Gauge("ddx_stt_sessions_active", "Live STT sessions open", registry=REGISTRY)
STT_SESSIONS = Counter("ddx_stt_sessions_total", "STT sessions by how they closed", ["engine", "close_code"],
                       registry=REGISTRY)
STT_AUDIO_SECONDS = Counter("ddx_stt_audio_seconds_total", "Seconds of audio received", ["engine"],
                            registry=REGISTRY)
STT_FINAL_LATENCY = Histogram("ddx_stt_final_latency_seconds", "Endpoint or CloseStream to final Results",
                              ["engine"], registry=REGISTRY, buckets=(.01, .05, .1, .25, .5, 1, 2, 5))

RESPONSES_STORED = Counter("ddx_responses_stored_total", "Responses persisted", ["status"], registry=REGISTRY)


router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=True, summary="Prometheus exposition")
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
