"""The web service: one static page and a small HTTP API over `remove_background`.

Every request runs the same library call as `petseg cutout`. The app adds only what a
service needs: an upload size limit and deadline enforced while the body streams in
(upload_limit.py), errors as JSON with one readable message that speaks of form
fields, and inference in a bounded queue (inference_queue.py), so the event loop keeps
serving the page, health checks and errors while the model works or is overloaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from petseg import __version__
from petseg.data.decode import source_name
from petseg.errors import ECHO_CHARACTERS, ImageError, ModelError, NotAnImageError, PetsegError, clipped, one_line, quoted
from petseg.limits import (MAX_READ_TIMEOUT_S, MAX_UPLOAD_MB, MIN_READ_TIMEOUT_S, MIN_UPLOAD_MB, SERVE_MAX_PIXELS,
                           check_threads, check_whole_number)
from petseg.server.inference_queue import InferenceQueue
from petseg.server.memory import release_freed_memory
from petseg.server.upload_limit import UploadLimitMiddleware

STATIC_DIR = Path(__file__).with_name("static")
MEGABYTE = 1024 * 1024
# Room for multipart boundaries, part headers and the small option fields, so that a
# photo of exactly --max-upload-mb is still accepted.
MULTIPART_ENVELOPE_BYTES = 64 * 1024
# All uploads in flight together may hold this many full-size uploads' bytes.
UPLOADS_IN_FLIGHT = 8

# No message is longer than this, whatever a library error says.
MESSAGE_CHARS = 300

MEDIA_TYPES = {"rgba": "image/png", "color": "image/jpeg", "mask": "image/png", "labels": "image/png"}
DOWNLOAD_SUFFIXES = {"rgba": "-cutout.png", "color": "-cutout.jpg", "mask": "-mask.png", "labels": "-labels.png"}

log = logging.getLogger("petseg.server")

UploadField = Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP, GIF, BMP or TIFF.")]
AlphaField = Annotated[
    Literal["matting", "hard", "soft"],
    Form(description="matting: edges matted against the photo; hard: the label mask; soft: P(pet) + P(border)/2."),
]


class OptionError(PetsegError):
    """A form option the API cannot use (answered with 422)."""


def create_app(
    model: str | Path | None = None,
    *,
    segmenter: Any = None,
    threads: int = 1,
    queue_size: int = 16,
    max_upload_mb: float = 20.0,
    max_pixels: int = SERVE_MAX_PIXELS,
    read_timeout_s: float = 60.0,
    flip_tta: bool = False,
) -> FastAPI:
    """Build the service. The model loads here, once, unless a `segmenter` is given.

    `model` is anything `Segmenter.load` accepts (run dir, .safetensors, .onnx, None for
    the bundled model). `threads` photos are processed at once and `queue_size` more may
    wait; beyond that a request gets 503. An upload must arrive within `read_timeout_s`.
    `flip_tta` (the model's, when it loads here): off by default, unlike `petseg cutout`'s
    matting. A server shares its cores between its users, and the mirror's second model pass
    costs a quarter of its throughput (21 -> 15 requests/s on 2 cores).
    """
    check_threads(threads)
    check_whole_number(queue_size, "queue_size", 0)
    check_whole_number(max_pixels, "max_pixels", 1)
    if not isinstance(flip_tta, bool):
        raise PetsegError(f"must be True or False, got {quoted(flip_tta)}", option="flip_tta")
    for name, value, low, high in (("max_upload_mb", max_upload_mb, MIN_UPLOAD_MB, MAX_UPLOAD_MB),
                                   ("read_timeout_s", read_timeout_s, MIN_READ_TIMEOUT_S, MAX_READ_TIMEOUT_S)):
        if not (isinstance(value, (int, float)) and low <= value <= high):
            raise PetsegError(f"must be a number from {low:g} to {high:g}, got {quoted(value)}", option=name)
    if segmenter is None:
        from petseg.inference import Segmenter

        # `threads` photos run at once: share the cores between them rather than give each all of them.
        segmenter = Segmenter.load(model, threads=max(1, (os.cpu_count() or 1) // threads), flip_tta=flip_tta)
    max_upload_bytes = int(max_upload_mb * MEGABYTE)
    queue = InferenceQueue(threads, queue_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.reset()  # each startup runs on a fresh event loop
        yield

    app = FastAPI(
        title="petseg",
        version=__version__,
        description="Cut pets out of photos with a U-Net segmentation model.",
        lifespan=lifespan,
    )
    app.add_middleware(
        UploadLimitMiddleware,
        max_bytes=max_upload_bytes + MULTIPART_ENVELOPE_BYTES,
        message=f"file: the upload is over the server's limit of {max_upload_mb:g} MB",
        deadline_s=read_timeout_s,
        budget_bytes=UPLOADS_IN_FLIGHT * (max_upload_bytes + MULTIPART_ENVELOPE_BYTES),
    )
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def render(upload: UploadFile, mode: str, bg: str | None, alpha: str):

        def run_model() -> bytes:
            from petseg.inference import remove_background

            # Read here, in the worker thread, so a request the queue refuses never loads its upload.
            data = upload.file.read()
            try:
                return remove_background(
                    data, segmenter=segmenter, mode=mode, bg=bg, alpha=alpha, max_pixels=max_pixels
                )
            finally:
                release_freed_memory()  # after a big photo; a no-op within the budget

        failure = None
        try:
            encoded = await queue.run(run_model)
        except ImageError as error:
            # The decoder names in-memory data with a stand-in; the user knows the upload by its name.
            named = error.message.replace(source_name(b""), one_line(clipped(upload.filename or "the upload")), 1)
            failure = type(error)(named, advice=error.advice)
        if failure is not None:  # raised outside the except: the worker's frames (the upload, its pixels) go now
            raise failure
        filename = _download_name(upload.filename, mode)
        headers = {"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "no-store"}
        return Response(encoded, media_type=MEDIA_TYPES[mode], headers=headers)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: uptime probes
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    @app.get("/healthz", summary="Liveness check")
    @app.head("/healthz", include_in_schema=False)  # uptime probes; one documented operation
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/model", summary="The loaded model's config, labels and the server's limits")
    @app.head("/api/model", include_in_schema=False)  # probes of the API, as for /healthz
    async def model_info() -> dict[str, Any]:
        config = segmenter.config
        limits = {
            "max_upload_bytes": max_upload_bytes,
            "max_pixels": max_pixels,
            "threads": threads,
            "queue_size": queue_size,
            "read_timeout_s": read_timeout_s,
        }
        from petseg.inference.compose import ALPHAS

        flips = {alpha: segmenter.flips_for(alpha) for alpha in ALPHAS}  # the mirror averaged in, per alpha
        return {"config": dataclasses.asdict(config), "labels": list(config.labels), "limits": limits,
                "flip_tta": flips}

    @app.post(
        "/api/cutout",
        summary="The photo with its background removed",
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, 503: {"description": "Busy: retry"}},
    )
    async def cutout(
        file: UploadField,
        mode: Annotated[
            Literal["rgba", "color"] | None,
            Form(description="rgba: transparent PNG; color: JPEG on the `bg` colour. Default: color with a `bg`, else rgba."),
        ] = None,
        bg: Annotated[
            str | None, Form(description="Background colour for mode=color: #rrggbb, rgb(r,g,b) or a name.")
        ] = None,
        alpha: AlphaField = "matting",
    ) -> Response:
        from petseg.inference.render import default_mode

        mode = default_mode(mode, has_background=bg is not None)
        if bg is not None and mode != "color":
            raise OptionError(f"bg: a background colour needs mode=color, got mode={mode}")
        return await render(file, mode, _normalize_color(bg) if bg is not None else None, alpha)

    @app.post(
        "/api/mask",
        summary="The segmentation as a single-channel PNG",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 503: {"description": "Busy: retry"}},
    )
    async def mask(
        file: UploadField,
        mode: Annotated[
            Literal["mask", "labels"],
            Form(description="mask: 0-255 pet alpha; labels: 1 pet, 2 background, 3 border."),
        ] = "mask",
        alpha: AlphaField = "matting",
    ) -> Response:
        return await render(file, mode, None, alpha)

    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON {"detail": "one readable line"}."""

    @app.exception_handler(PetsegError)
    async def user_error(request: Request, error: PetsegError) -> JSONResponse:
        if isinstance(error, NotAnImageError):
            status = 415
        elif isinstance(error, ImageError):
            status = 400  # corrupt, truncated, or over the pixel limit
        elif isinstance(error, ModelError):  # the served model failed: the server's fault, not the request's
            log.error("%s", error.worded(None))
            status = 500
        else:
            status = 422
        # No advice: it names options of the command line or of Python, not of this form.
        return JSONResponse({"detail": _one_line(error.worded(None))}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_options(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"] if part not in ("body", "query"))
            message = problem["msg"]
            if field == "file" and problem.get("type") != "missing":
                # pydantic's words would be "Value error, Expected UploadFile, received: <class 'str'>".
                message = "must be a file part of a multipart/form-data upload, not a text value"
            elif "input" in problem and problem.get("type") != "missing":
                message += f", got {quoted(problem['input'])}"
            problems.append(f"{field}: {message}")
        return JSONResponse({"detail": _one_line("; ".join(problems))}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        detail = str(error.detail)
        if error.status_code == 400 and request.method == "POST":
            # The form parser's words ("Missing boundary in multipart."): say which part of the request they mean.
            detail = f"form: not a multipart/form-data upload petseg can read ({detail})"
        return JSONResponse({"detail": _one_line(detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal server error ({type(error).__name__})"}, status_code=500)


def _normalize_color(text: str) -> str:
    """Any CSS colour Pillow knows -> "#rrggbb", checked here so the message names the form field."""
    from petseg.inference.compose import parse_color

    try:
        red, green, blue = parse_color(text.strip()[:ECHO_CHARACTERS + 1])
    except PetsegError:
        raise OptionError(f"bg: {clipped(text)!r} is not a colour (use #rrggbb, rgb(r,g,b) or a name)") from None
    return f"#{red:02x}{green:02x}{blue:02x}"


def _one_line(message: str) -> str:
    """A message fit for the API: one line, bounded length."""
    message = " ".join(message.split())
    return message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 1] + "…"


def _download_name(filename: str | None, mode: str) -> str:
    """A safe file name for the result, after the upload's own name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "").stem).strip("._") or "photo"
    return stem[:100] + DOWNLOAD_SUFFIXES[mode]
