"""Settings: one typed tree, resolved CLI flags > environment > TOML file > defaults.

Every setting has an environment name `DDX_<SECTION>__<KEY>` (e.g. `DDX_SERVER__PORT`); the names the
seed clients already use (`DDX_LLM_API_KEYS`, …) are kept as aliases. Values are layered here, by hand,
so that a bad one can be reported with where it came from; pydantic does the validation.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "DDX_"
# Seed names → dotted setting. They win over the scheme's own name only when both are set the same way.
SEED_ENV_ALIASES: dict[str, str] = {
    "DDX_LLM_API_KEYS": "auth.api_keys",
    "DDX_LLM_USE_REAL_MODEL": "llm.use_real_model",
    "DDX_LLM_CORS_ORIGINS": "server.cors_origins",
    "DDX_LLM_REQUEST_ID_HEADER": "server.request_id_header",
    "DDX_STT_AUDIO_MAX_CHANNELS": "stt.audio_max_channels",
    "DDX_STT_AUDIO_MAX_SAMPLE_RATE": "stt.audio_max_sample_rate",
}


def state_dir() -> Path:
    """XDG state directory of ddx-omni (PID file, logs, default database)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ddx-omni"


def data_dir() -> Path:
    """XDG data directory of ddx-omni (uploaded files)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ddx-omni"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(4250, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)
    cors_origins: list[str] = ["http://localhost:3100"]
    request_id_header: str = "X-Request-ID"

    _csv = field_validator("cors_origins", mode="before")(_split_csv)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class AuthSettings(_Section):
    api_keys: list[str] = []

    _csv = field_validator("api_keys", mode="before")(_split_csv)


class ModelExtras(_Section):
    """What the registry tells about a model beyond OpenAI's fields (the seed's clients read these)."""

    family: str | None = None
    arch: str | None = None
    total_params_b: float | None = None
    quantization: str | None = None
    context_window: int | None = None
    multimodal: bool = False
    label: str | None = None


class ModelEntry(ModelExtras):
    """One registry entry; extras left out are read from a local model's config.json and weights."""

    id: str
    path: str | None = None  # hub repo or local directory; defaults to `id`
    # an upstream OpenAI-compatible server (`http://host:port/v1`) answers for this id instead of a local model;
    # several URLs are balanced by least outstanding requests, with failover
    url: list[str] = []
    api_key: SecretStr | None = None  # sent to the upstream only, never shown
    upstream_model: str | None = None  # the model name the upstream knows, when not `id`

    _csv = field_validator("url", mode="before")(_split_csv)


DEFAULT_MODEL = "mlx-community/Qwen3-4B-Instruct-2507-4bit"


class MockToolCall(_Section):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = {}


class MockReply(_Section):
    content: str | None = None
    tool_calls: list[MockToolCall] = []
    reasoning: str | None = None

    @model_validator(mode="after")
    def _says_something(self) -> MockReply:
        if self.content is None and not self.tool_calls:
            raise ValueError("a reply needs `content`, `tool_calls` or both")
        return self


class MockRule(_Section):
    """One rule of a mock script: `match` is searched in the newest user message or tool output."""

    match: re.Pattern[str]
    reply: MockReply


def load_mock_script(path: Path) -> list[MockRule]:
    """The rules of a mock script file: a JSON list (or `{"rules": [...]}`), or TOML `[[rules]]` tables."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the mock script: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"the mock script is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") from None
    rules = data.get("rules") if isinstance(data, dict) else data
    if not isinstance(rules, list):
        raise ValueError("the mock script must be a list of rules (or an object with a `rules` list)")
    try:
        return _MOCK_RULES.validate_python(rules)
    except ValidationError as exc:
        first = exc.errors()[0]
        index, *where = first["loc"]
        place = ".".join(str(part) for part in where) or "the rule itself"
        raise ValueError(f"mock script rule {index}, at {place}: {first['msg']}") from None


_MOCK_RULES = TypeAdapter(list[MockRule])


class LlmSettings(_Section):
    use_real_model: bool = False
    model: str = DEFAULT_MODEL  # loaded at start in real mode
    models: list[ModelEntry] = [
        ModelEntry(id=DEFAULT_MODEL, family="qwen3", arch="qwen3", total_params_b=4.0,
                   quantization="4bit", context_window=262144, label="Qwen3 4B Instruct 2507 (4-bit)"),
    ]
    load_wait_s: float = Field(120.0, ge=0)  # how long a request waits for a loading model
    default_max_tokens: int = Field(512, ge=1)
    prefill_step_size: int = Field(2048, ge=1)
    swap_drain_s: float = Field(30.0, ge=0)  # a hot swap lets running generations finish this long, then fails them
    default_temperature: float = Field(1.0, ge=0, le=2)  # OpenAI's default when a request names none
    # MLX on the CPU: auto preloads Debian's OpenBLAS when installed (re-exec at start), bundled keeps mlx's own BLAS
    cpu_blas: Literal["auto", "bundled"] = "auto"
    # MLX on the CPU: auto casts bfloat16/float16 checkpoints to float32 when it fits in memory (the fast BLAS path)
    cpu_dtype: Literal["auto", "float32", "native"] = "auto"
    max_batch_size: int = Field(8, ge=1)  # concurrent generations decoded together in one batch (1 = one at a time)
    prompt_cache_bytes: int = Field(1 << 30, ge=0)  # KV prefixes kept for later turns (LRU, longest prefix); 0 = off
    idle_unload_s: float = Field(0.0, ge=0)  # unload a model nobody used for this long (0 = never); reloaded on use
    upstream_connect_timeout_s: float = Field(5.0, gt=0)  # an upstream that does not connect this fast is skipped
    upstream_read_timeout_s: float = Field(600.0, gt=0)  # longest silence between two chunks of an upstream answer
    upstream_breaker_s: float = Field(30.0, ge=0)  # a failed upstream URL gets no requests for this long
    mock_script: Path | None = None  # mock mode answers by these rules (JSON or TOML), else the canned call

    @field_validator("mock_script")
    @classmethod
    def _check_mock_script(cls, path: Path | None) -> Path | None:
        # read once here so that a bad file stops the start with a configuration error (the engine reads it again)
        if path is not None:
            load_mock_script(path)
        return path


class SttSettings(_Section):
    engine: Literal["auto", "parakeet", "sphinx"] = "auto"
    parakeet_model: str = "mlx-community/parakeet-tdt-0.6b-v3"
    audio_max_channels: int = Field(2, ge=1)
    audio_max_sample_rate: int = Field(48000, ge=8000)
    idle_timeout_s: float = Field(10.0, gt=0)  # no audio and no KeepAlive for this long → 1011 NET-0001
    interim_interval_s: float = Field(0.5, gt=0)  # how often interim Results are sent while speaking
    max_sessions: int = Field(16, ge=1)
    # webrtcvad's 30 ms frames flicker inside words: shorter `endpointing` values are raised to this floor.
    min_endpointing_ms: int = Field(300, ge=30)
    # a segment with no endpoint (long speech, endpointing=false) is finalised after this long, bounding latency
    max_segment_s: float = Field(15.0, gt=1)
    # parakeet streaming context in 80 ms encoder frames: right = look-ahead held as draft (0.64 s, not ~20 s)
    parakeet_left_context: int = Field(128, ge=1)
    parakeet_right_context: int = Field(8, ge=1)
    # pocketsphinx holds the GIL while decoding: final decodes run in this many worker processes
    sphinx_processes: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1)


class McpServerEntry(_Section):
    """An operator-configured MCP server (`[[responses.mcp_servers]]`), used by naming its label with no
    server_url: either `url` (+ `headers`) or `command` (+ `args`, `env`) for a stdio server ddx-omni starts."""

    label: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")  # as a request's server_label
    url: str | None = None
    headers: dict[str, str] = {}
    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    description: str | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerEntry:
        if (self.url is None) == (self.command is None):
            raise ValueError(f"MCP server {self.label!r} needs exactly one of url or command")
        return self


class ResponsesSettings(_Section):
    db_path: Path = Field(default_factory=lambda: state_dir() / "responses.db")
    default_max_output_tokens: int = Field(1024, ge=1)
    # NORMAL: in WAL mode a commit survives a killed process (SIGKILL), which is the promise made to clients;
    # FULL also survives power loss, at the price of an fsync on every commit.
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # built-in tool calls (MCP, file search…) one response may run when the request sets no max_tool_calls
    max_tool_calls: int = Field(16, ge=1)
    mcp_servers: list[McpServerEntry] = []
    # glob patterns a request's server_url must match (fnmatch, whole URL); anything else is a 400
    mcp_allowed_urls: list[str] = ["*"]
    mcp_timeout_s: float = Field(30.0, gt=0)  # bounds connecting, listing and each call of an MCP server
    mcp_max_output_chars: int = Field(20000, ge=1)  # what the model reads of one MCP call's result, at most

    _csv = field_validator("mcp_allowed_urls", mode="before")(_split_csv)


class StorageSettings(_Section):
    # "" = SQLite, each store in its own file (e.g. [responses].db_path); sqlite:///path; postgresql://user:pw@host/db
    url: str = ""
    pool_size: int = Field(10, ge=1)  # PostgreSQL connections per store
    heartbeat_s: float = Field(2.0, gt=0)  # how often a replica says it is alive (shared database only)
    lease_s: float = Field(10.0, gt=0)  # a replica silent this long is dead: others fail its running responses
    # how other replicas reach this one (cross-replica cancel and stream attach); "" = http://<host>:<port>
    replica_url: str = ""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        from ..storage.url import parse_url

        if value:
            parse_url(value)
        return value

    @model_validator(mode="after")
    def _lease_outlasts_heartbeats(self) -> StorageSettings:
        if self.lease_s <= 2 * self.heartbeat_s:
            raise ValueError("lease_s must be more than twice heartbeat_s (a missed beat is not a death)")
        return self


class WebSearchSettings(_Section):
    """The Responses `web_search` tool: which search backend, and how pages are fetched."""

    provider: Literal["none", "searxng", "brave", "tavily"] = "none"  # none: web_search is not offered
    url: str = ""  # searxng: its base URL (required); brave/tavily: overrides the public API's base URL
    api_key: SecretStr | None = None  # brave/tavily key; never logged, echoed or stored
    max_results: int = Field(5, ge=1, le=20)  # results listed to the model per search
    pages_per_search: int = Field(3, ge=0, le=10)  # top results whose readable text a search hands the model
    search_timeout_s: float = Field(10.0, gt=0)  # one provider query
    fetch_timeout_s: float = Field(10.0, gt=0)  # one page, all redirects included
    max_page_bytes: int = Field(2_000_000, ge=1024)  # a page body is cut here
    max_redirects: int = Field(5, ge=0, le=20)
    allow_private_networks: bool = False  # let pages on loopback/private/link-local addresses be fetched
    allowed_networks: list[str] = []  # CIDRs fetched even so (an intranet wiki: ["10.1.2.0/24"])
    cache_ttl_s: float = Field(300.0, ge=0)  # search results and pages are reused this long (0: no cache)
    # characters of page text a whole search may hand the model, by the request's search_context_size
    context_chars_low: int = Field(3000, ge=200)
    context_chars_medium: int = Field(8000, ge=200)
    context_chars_high: int = Field(24000, ge=200)
    user_agent: str = "ddx-omni-web-search/1.0"

    _csv = field_validator("allowed_networks", mode="before")(_split_csv)

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
        return v

    @model_validator(mode="after")
    def _provider_needs(self) -> WebSearchSettings:
        if self.provider == "searxng" and not self.url:
            raise ValueError("provider 'searxng' needs [web_search].url (DDX_WEB_SEARCH__URL), "
                             "the base URL of a SearXNG instance with the json format enabled")
        if self.provider in ("brave", "tavily") and self.api_key is None:
            raise ValueError(f"provider '{self.provider}' needs [web_search].api_key (DDX_WEB_SEARCH__API_KEY)")
        return self
class CodeInterpreterSettings(_Section):
    data_dir: Path = Field(default_factory=lambda: state_dir() / "containers")  # containers' /mnt/data + records
    # without bubblewrap the code interpreter is refused (400); true runs code as plain, unisolated processes
    allow_unsandboxed: bool = False
    max_containers: int = Field(32, ge=1)  # running containers at once on this replica (more → 429)
    timeout_s: float = Field(60.0, gt=0)  # wall clock of one call; past it the container's process group is killed
    idle_minutes: int = Field(20, ge=1, le=10080)  # expiry after the last activity, when a create names none
    memory_limit: Literal["1g", "4g", "16g", "64g"] = "1g"  # default address-space limit of a container
    max_memory_limit: Literal["1g", "4g", "16g", "64g"] = "4g"  # larger requested memory_limit → 400
    cpu_s: int = Field(3600, ge=1)  # CPU seconds one container process may use in its lifetime
    max_processes: int = Field(64, ge=4)  # processes/threads per container (fork bombs stop here)
    max_file_bytes: int = Field(1024 ** 3, ge=1024)  # largest file the code may write
    max_output_bytes: int = Field(20000, ge=256)  # logs kept per call; the rest is cut with a marker
    uid_base: int = Field(200000, ge=1000)  # a root server runs container n as uid uid_base + n


class AnthropicSettings(_Section):
    # Seconds between `ping` events while a stream has nothing else to say (a long prefill), so that clients
    # and proxies with idle timeouts keep the stream open.
    ping_interval_s: float = Field(5.0, gt=0)


class VisionSettings(_Section):
    """Images in chat, Responses and Messages requests: how they are fetched, decoded and bounded."""

    max_image_bytes: int = Field(20_000_000, ge=1024)  # one image, decoded from base64 or fetched; larger → 400
    max_image_pixels: int = Field(50_000_000, ge=1)  # width × height Pillow may decode (decompression bombs)
    max_images: int = Field(16, ge=1)  # images one request may carry, its replayed history included
    low_detail_pixels: int = Field(512 * 512, ge=784)  # `detail: low` shrinks an image to at most this many pixels
    fetch_timeout_s: float = Field(10.0, gt=0)  # one remote image, all redirects included
    max_redirects: int = Field(5, ge=0, le=20)
    allow_private_networks: bool = False  # let image URLs reach loopback/private/link-local addresses
    allowed_networks: list[str] = []  # CIDRs fetched even so (an intranet image host)

    _csv = field_validator("allowed_networks", mode="before")(_split_csv)
    _cidrs = field_validator("allowed_networks")(WebSearchSettings._cidrs.__func__)  # type: ignore[attr-defined]
class FilesSettings(_Section):
    dir: Path = Field(default_factory=lambda: data_dir() / "files")  # uploaded bytes, one file per id
    # its own SQLite file beside responses.db: long ingestion transactions never hold the responses writer lock
    db_path: Path = Field(default_factory=lambda: state_dir() / "files.db")
    max_bytes: int = Field(512 * 1024 * 1024, ge=1)  # larger uploads → 413
    ingest_workers: int = Field(1, ge=1)  # files parsed, chunked and embedded at once
    max_results_default: int = Field(10, ge=1, le=50)  # search results when a request names no max_num_results


class EmbeddingsSettings(_Section):
    model: str = ""  # hub id or local path of an MLX embedding model; "" → file search is BM25 only
    # auto: the model family's own (decoders: last token; BERT encoders: their sentence-transformers pooling)
    pooling: Literal["auto", "last", "mean", "cls"] = "auto"
    query_prefix: str = ""  # prepended to search queries (Qwen3-Embedding: "Instruct: …\nQuery:")
    max_input_tokens: int = Field(8192, ge=1)  # a longer /v1/embeddings input → 400
    batch_tokens: int = Field(16384, ge=1)  # padded tokens per forward pass


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`, which does the layering."""

    model_config = SettingsConfigDict(extra="forbid")

    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    llm: LlmSettings = LlmSettings()
    stt: SttSettings = SttSettings()
    responses: ResponsesSettings = ResponsesSettings()
    storage: StorageSettings = StorageSettings()
    anthropic: AnthropicSettings = AnthropicSettings()
    web_search: WebSearchSettings = WebSearchSettings()
    code_interpreter: CodeInterpreterSettings = CodeInterpreterSettings()
    vision: VisionSettings = VisionSettings()
    files: FilesSettings = FilesSettings()
    embeddings: EmbeddingsSettings = EmbeddingsSettings()

    @classmethod
    def settings_customise_sources(  # the base's signature; load_settings layers the sources itself
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,  # noqa: ARG003
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
            file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:  # noqa: ARG003
        # load_settings merges the layers itself (to know where each value came from).
        return (init_settings,)


class SettingsError(Exception):
    """A setting that stops the start; the message says what, where from, and how to fix it."""


def find_config_file(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    for candidate in (Path("config.toml"), Path.home() / ".config" / "ddx-omni" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"Cannot read the config file {path}: {exc.strerror}.\n"
                            f"Fix: check the path given to --config, or remove the flag to use the defaults.") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"The config file {path} is not valid TOML: {exc}.\n"
                            f"Fix: correct the syntax at that place "
                            f"(see config.toml in the repository for the format).") from None


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """DDX_<SECTION>__<KEY> and the seed aliases → nested dict, plus dotted key → variable name."""
    layer: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        if name in SEED_ENV_ALIASES:
            dotted = SEED_ENV_ALIASES[name]
        elif name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX):].partition("__")
            dotted = f"{section.lower()}.{key.lower()}"
        else:
            continue
        # The scheme's own name wins over a seed alias for the same setting.
        if dotted in origin and origin[dotted] not in SEED_ENV_ALIASES:
            continue
        _set(layer, dotted, value)
        origin[dotted] = name
    return layer, origin


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def load_settings(config: Path | None = None, overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve the settings: `overrides` (dotted keys from CLI flags) > environment > TOML > defaults."""
    environ = os.environ if environ is None else environ
    path = find_config_file(config)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        for dotted, value in _flatten(_read_toml(path)).items():
            _set(merged, dotted, value)
            origin[dotted] = f"the config file {path}"
    env, env_origin = _env_layer(environ)
    for dotted, value in _flatten(env).items():
        _set(merged, dotted, value)
        origin[dotted] = f"the environment variable {env_origin[dotted]}"
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(merged, dotted, value)
            origin[dotted] = "the command line"
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, origin)) from None


def _explain(exc: ValidationError, origin: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        dotted = ".".join(loc)
        # a list item's error (llm.models.0.id) comes from the setting that holds the list
        source = next((origin[".".join(loc[:n])] for n in range(len(loc), 0, -1) if ".".join(loc[:n]) in origin),
                      None)
        source = source or next((src for key, src in origin.items() if key.startswith(dotted + ".")), "the defaults")
        env_name = f"{ENV_PREFIX}{loc[0].upper()}__{loc[1].upper()}" if len(loc) > 1 else None
        if err["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            fix = f"remove it; known keys here: {', '.join(known)}" if known else "remove it"
            lines.append(f"Unknown setting '{dotted}' (from {source}). Fix: {fix}.")
            continue
        value = err.get("input")
        shown = "" if isinstance(value, Mapping) else f" = {value!r}"
        how = f"set {env_name} or [{loc[0]}].{loc[1]} in the config file to a valid value" if env_name else "correct it"
        lines.append(f"Invalid setting '{dotted}'{shown} (from {source}): {err['msg']}. Fix: {how}, or remove it "
                     f"to use the default.")
    return "\n".join(lines)


def _known_keys(loc: list[str]) -> list[str]:
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return sorted(model.model_fields)
