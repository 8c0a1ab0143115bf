"""Image input: find the image parts of a request's messages, fetch or decode each one safely, hand them to the engine.

Every API converts its image blocks to OpenAI chat parts first — `{"type": "image_url", "image_url": {"url",
"detail"}}` for data: and http(s) URLs, `{"type": "image_file", "file_id", "detail"}` for uploaded files — so
that one loader serves chat, Responses and Anthropic Messages alike. Remote URLs go through the SSRF-guarded
fetcher (core/fetch.py) with its own size cap, timeout and redirect limit; Pillow decodes off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
from typing import Any, Protocol

from ..core.errors import ApiError
from ..core.fetch import Fetcher, FetchError, FetchLimits
from ..core.settings import ModelEntry, VisionSettings
from .engine import ChatParams
from .registry import resolve

IMAGE_PART_TYPES = ("image_url", "image_file")
DETAILS = ("auto", "low", "high")
_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),(?P<data>.*)", re.S)


class FileReader(Protocol):
    """What image input needs of the files component (issue 12's FilesService)."""

    async def read_bytes(self, file_id: str) -> tuple[str, bytes]: ...


def image_error(message: str, code: str = "invalid_image", param: str | None = None) -> ApiError:
    # 400 on every API: the openai SDK raises BadRequestError, Anthropic's invalid_request_error.
    return ApiError(message, param=param, status=400, code=code)


def image_parts(messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, part) of every image part, in the order the engine meets them."""
    found = []
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES:
                found.append((f"messages[{i}].content[{j}]", part))
    return found


def has_images(params: ChatParams) -> bool:
    return bool(image_parts(params.messages))


def _detail(part: dict[str, Any]) -> str:
    spec = part.get("image_url")
    detail = (spec.get("detail") if isinstance(spec, dict) else None) or part.get("detail") or "auto"
    return str(detail)


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of a base64 `data:image/…` URL; anything else is a 400 that says what is wrong."""
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise image_error("the image's data: URL is malformed: expected data:image/<type>;base64,<data>")
    media = (match["media"] or "").lower()
    if not media.startswith("image/"):
        raise image_error(f"the data: URL holds {media or 'no media type'}, not an image (data:image/png;base64,…)")
    if ";base64" not in match["params"].lower():
        raise image_error("the image's data: URL must be base64-encoded (data:image/<type>;base64,<data>)")
    data = re.sub(r"\s+", "", match["data"])
    if len(data) * 3 // 4 > max_bytes:
        raise image_error(f"the image is larger than {max_bytes} bytes", code="image_too_large")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise image_error("the image's data: URL is not valid base64") from None


def decode_image(data: bytes, max_pixels: int, low_pixels: int | None) -> Any:
    """Pillow image (RGB, upright) from encoded bytes; `low_pixels` shrinks it to at most that many pixels."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:  # reads the header only: the size is known before decoding
            if opened.width * opened.height > max_pixels:
                raise image_error(f"the image is {opened.width}×{opened.height} pixels, more than the "
                                  f"{max_pixels} this server decodes", code="image_too_large")
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise image_error(f"the image could not be decoded ({type(exc).__name__}): send PNG, JPEG, GIF or WebP "
                          "bytes") from None
    if low_pixels and image.width * image.height > low_pixels:
        scale = (low_pixels / (image.width * image.height)) ** 0.5
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                             Image.Resampling.BICUBIC)
    return image


class ImageInput:
    """Turns a request's image parts into decoded images on `params.images`, or a clear 4xx."""

    def __init__(self, settings: VisionSettings, registry: dict[str, ModelEntry], files: FileReader | None = None):
        self.settings = settings
        self.registry = registry
        self.files = files
        self.fetcher = Fetcher(FetchLimits(timeout_s=settings.fetch_timeout_s, max_bytes=settings.max_image_bytes,
                                           max_redirects=settings.max_redirects,
                                           allow_private_networks=settings.allow_private_networks,
                                           allowed_networks=tuple(settings.allowed_networks),
                                           user_agent="ddx-omni-vision/1.0"))

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    def accepts(self, model_id: str) -> bool:
        entry = resolve(self.registry, model_id)
        return bool(entry and entry.multimodal)

    async def prepare(self, model_id: str, params: ChatParams, param: str | None = None,
                      memo: dict[str, Any] | None = None) -> None:
        """Check that `model_id` takes images and load them; `param` names the request field (chat: messages).
        `memo` keeps the images of earlier calls for the same request (Responses refits its prompt)."""
        parts = image_parts(params.messages)
        if not parts:
            return
        if not self.accepts(model_id):
            names = [e.id for e in self.registry.values() if e.multimodal]
            hint = f" (this server has: {', '.join(names)})" if names else ""
            raise image_error(f"Model {model_id} reads text only and cannot take images. Use a multimodal model"
                              f"{hint}: GET /v1/models lists them with \"multimodal\": true, and POST "
                              f"/v1/models/load {{\"model_id\": …}} loads one.", code="model_not_multimodal",
                              param=param and parts[0][0].replace("messages", param, 1))
        if len(parts) > self.settings.max_images:
            raise image_error(f"{len(parts)} images in one request; at most {self.settings.max_images}",
                              code="too_many_images", param=param)
        memo = {} if memo is None else memo
        images = []
        for n, (where, part) in enumerate(parts, 1):
            key = repr(sorted((k, str(v)) for k, v in part.items()))
            if key not in memo:
                memo[key] = await self._load(n, part, param and where.replace("messages", param, 1))
            images.append(memo[key])
        params.images = images

    async def _load(self, n: int, part: dict[str, Any], param: str | None) -> Any:
        detail = _detail(part)
        try:
            if detail not in DETAILS:
                raise image_error(f"detail must be one of {', '.join(DETAILS)}, not {detail!r}")
            data = await self._bytes(part)
            low = self.settings.low_detail_pixels if detail == "low" else None
            return await asyncio.to_thread(decode_image, data, self.settings.max_image_pixels, low)
        except ApiError as exc:
            exc.message, exc.param = f"Image {n}: {exc.message}", param
            raise

    async def _bytes(self, part: dict[str, Any]) -> bytes:
        if part.get("type") == "image_file":
            return await self._file(part.get("file_id"))
        spec = part.get("image_url")
        url = spec.get("url") if isinstance(spec, dict) else spec
        if not isinstance(url, str) or not url:
            raise image_error("image_url needs a url: an https URL or a data:image/…;base64 URL")
        if url[:5].lower() == "data:":
            return decode_data_url(url, self.settings.max_image_bytes)
        if not url.lower().startswith(("http://", "https://")):
            raise image_error("an image URL must be https://, http:// or data:image/…;base64")
        return await self._fetch(url)

    async def _fetch(self, url: str) -> bytes:
        try:
            result = await self.fetcher.get(url, accept="image/*")
        except FetchError as exc:
            code = "image_url_refused" if exc.kind == "refused" else "image_fetch_failed"
            raise image_error(f"the image at {url} could not be fetched: {exc.message}", code=code) from None
        if result.truncated:
            raise image_error(f"the image at {url} is larger than {self.settings.max_image_bytes} bytes",
                              code="image_too_large")
        return result.content

    async def _file(self, file_id: Any) -> bytes:
        if not isinstance(file_id, str) or not file_id:
            raise image_error("an input_image needs image_url or file_id")
        if self.files is None:
            raise image_error("input_image by file_id needs the /v1/files API, which this server does not offer "
                              "yet: send the image as image_url (https or data: URL)", code="unsupported_file_id")
        try:
            _name, data = await self.files.read_bytes(file_id)
        except ApiError as exc:
            raise image_error(f"file {file_id}: {exc.message}", code="file_not_found") from None
        if len(data) > self.settings.max_image_bytes:
            raise image_error(f"file {file_id} is larger than {self.settings.max_image_bytes} bytes",
                              code="image_too_large")
        return data
