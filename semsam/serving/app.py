"""The FastAPI application: upload an image, click on it, get K masks from part to whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from semsam import __version__
from semsam.automatic import MaskGenerator, TextPrompter, TextResult, mask_names
from semsam.build import ASSETS
from semsam.modeling import SemanticSam
from semsam.serving.interactive import answer_prompt
from semsam.serving.limits import ModelRunner, ServeLimits, ServerBusy
from semsam.serving.schemas import (
    ErrorResponse,
    EverythingRequest,
    EverythingResponse,
    ImageInfo,
    PredictRequest,
    PredictResponse,
    ServerInfo,
    SpatialPrompt,
    TextRequest,
    TextResponse,
)
from semsam.serving.store import ImageStore, UnknownImage
from semsam.serving.uploads import UploadError, decode_upload
from semsam.text import parse_vocabulary

STATIC = Path(__file__).resolve().parent / "static"
EXAMPLE = ASSETS / "example.jpg"
# Room for the multipart envelope around the file itself when checking Content-Length.
MULTIPART_OVERHEAD = 64 * 1024
DEFAULT_POINTS_PER_SIDE = 16
ERRORS = {code: {"model": ErrorResponse} for code in (404, 413, 415, 422, 503)}


def create_app(*, model: SemanticSam, model_name: str, limits: ServeLimits | None = None) -> FastAPI:
    """Builds the demo server around one loaded model.

    Args:
        model: the model to segment with (e.g. `semsam.load_model()`).
        model_name: shown on the page and in /api/info.
        limits: upload, cache, concurrency and time limits; defaults when None.

    Returns:
        The app; serve it with uvicorn (`semsam serve` does).
    """
    limits = limits or ServeLimits()
    store = ImageStore(model=model, max_images=limits.max_images, max_embeddings=limits.max_embeddings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runner = ModelRunner(limits)
        yield
        app.state.runner.close()

    # /docs and /redoc with their scripts served from the package (fastapi-offline), not a CDN: works offline.
    app = FastAPIOffline(title="semsam", summary="Segment and recognise anything at any granularity",
                         version=__version__, lifespan=lifespan, favicon_url="/static/favicon.svg")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(UnknownImage)
    async def unknown_image(request: Request, error: UnknownImage) -> JSONResponse:
        return JSONResponse(status_code=404, content={
            "detail": f"no image with id {error.args[0]!r}: it was never uploaded or was forgotten to make room "
                      "for newer ones; upload it again (POST /api/images)"})

    @app.exception_handler(ServerBusy)
    async def server_busy(request: Request, error: ServerBusy) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(error)}, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # One readable line per problem; the offending input is left out, as it may not even be valid JSON (NaN).
        return JSONResponse(status_code=422, content={"detail": "; ".join(map(describe_error, error.errors()))})

    @app.exception_handler(ValueError)
    async def bad_prompt(request: Request, error: ValueError) -> JSONResponse:
        # The predictor and vocabulary parser raise ValueError for input they cannot use, with the reason.
        return JSONResponse(status_code=422, content={"detail": str(error)})

    @app.middleware("http")
    async def refuse_large_uploads(request: Request, call_next):  # noqa: ANN001, ANN202 - Starlette's signature
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and (
                int(length) > limits.max_upload_bytes + MULTIPART_OVERHEAD):
            return JSONResponse(status_code=413, content={
                "detail": f"the request is {int(length) / 2**20:.1f} MiB; uploads are limited to "
                          f"{limits.max_upload_bytes / 2**20:.1f} MiB"})
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/example", summary="The bundled example image (JPEG)", response_class=FileResponse)
    async def example() -> FileResponse:
        return FileResponse(EXAMPLE, media_type="image/jpeg")

    @app.get("/api/info", response_model=ServerInfo, summary="Model, limits and cache state")
    async def info() -> ServerInfo:
        return ServerInfo(
            model=model_name, levels=model.config.decoder.num_granularities,
            labels_available=model.semantic.trained,
            limits=vars(limits),
            cached_embeddings=store.cached_embeddings, encodes=store.encodes)

    @app.post("/api/images", response_model=ImageInfo, responses=ERRORS, summary="Upload an image")
    async def upload(file: UploadFile = File(description="the image: PNG, JPEG, WebP, GIF, BMP or TIFF")) -> ImageInfo:
        data = await file.read(limits.max_upload_bytes + 1)
        name = file.filename or "upload"
        try:
            image = await run_in_threadpool(decode_upload, data, filename=name, max_bytes=limits.max_upload_bytes,
                                            max_pixels=limits.max_pixels)
        except UploadError as error:
            raise HTTPException(status_code=error.status, detail=str(error)) from None
        image_id = store.add(image)
        return ImageInfo(image_id=image_id, width=image.shape[1], height=image.shape[0],
                         encoded=store.is_encoded(image_id))

    @app.post("/api/images/{image_id}/predict", response_model=PredictResponse, responses=ERRORS,
              summary="K masks, part to whole, for clicks and/or a box")
    async def predict(image_id: str, prompt: PredictRequest, request: Request) -> PredictResponse:
        image = store.image(image_id)
        height, width = image.shape[:2]
        check_prompt(prompt, width=width, height=height, max_points=limits.max_points)
        check_vocabularies(prompt.objects, prompt.parts, limits)
        if prompt.crop is not None:
            x0, y0, x1, y1 = prompt.crop
            if not (x0 < x1 <= width and y0 < y1 <= height):
                raise HTTPException(422, f"crop {list(prompt.crop)} must satisfy 0 <= x0 < x1 <= {width} and "
                                         f"0 <= y0 < y1 <= {height}: send back the crop of the response whose logits "
                                         "are mask_input")
        return await request.app.state.runner.run(lambda: answer_prompt(store, image_id, prompt))

    @app.post("/api/images/{image_id}/everything", response_model=EverythingResponse, responses=ERRORS,
              summary="Segment everything at the chosen levels, with the whole/part tree")
    async def everything(image_id: str, request_body: EverythingRequest, request: Request) -> EverythingResponse:
        image = store.image(image_id)
        check_vocabularies(request_body.objects, request_body.parts, limits)
        count = model.config.decoder.num_granularities
        levels = sorted(set(request_body.levels or range(1, count + 1)))
        if levels[0] < 1 or levels[-1] > count:
            raise HTTPException(422, f"levels must be in 1..{count} (1 = finest), got {request_body.levels}")
        points_per_side = request_body.points_per_side or min(DEFAULT_POINTS_PER_SIDE, limits.max_points_per_side)
        if points_per_side > limits.max_points_per_side:
            raise HTTPException(422, f"points_per_side {points_per_side} is above this server's "
                                     f"limit of {limits.max_points_per_side}")
        generator = MaskGenerator(model, levels=levels, points_per_side=points_per_side, output_mode="coco_rle")
        # On the cached embedding (and with the request's vocabulary): only the decoder runs for a cached image.
        work = lambda: store.with_predictor(  # noqa: E731 - a closure over the request, run in a worker thread
            image_id, lambda predictor: generator.generate(image, predictor=predictor),
            objects=request_body.objects, parts=request_body.parts)
        masks = await request.app.state.runner.run(work)
        named = [{"name": None, "path": None} if name is None else {"name": name.name, "path": name.path}
                 for name in mask_names(masks)]
        return EverythingResponse(levels=levels, masks=[mask.to_sa1b() | names for mask, names in zip(masks, named)])

    @app.post("/api/images/{image_id}/text", response_model=TextResponse, responses=ERRORS,
              summary="The masks a phrase names, ranked; alone or with clicks and/or a box")
    async def text(image_id: str, prompt: TextRequest, request: Request) -> TextResponse:
        image = store.image(image_id)
        height, width = image.shape[:2]
        check_prompt(prompt, width=width, height=height, max_points=limits.max_points)
        check_vocabularies(prompt.objects, prompt.parts, limits)
        prompter = TextPrompter(model, points_per_side=min(DEFAULT_POINTS_PER_SIDE, limits.max_points_per_side),
                                text_encoder=store.text_encoder)
        spatial = {"points": prompt.points or None, "labels": prompt.labels or None, "box": prompt.box}
        work = lambda: store.with_predictor(  # noqa: E731 - a closure over the request, run in a worker thread
            image_id, lambda predictor: prompter.predict(image, prompt.text, predictor=predictor, **spatial),
            objects=prompt.objects, parts=prompt.parts)
        result: TextResult = await request.app.state.runner.run(work)
        return TextResponse(**result.to_json())

    return app


def describe_error(error: dict) -> str:
    """`points[0][1]: Input should be a finite number` from a pydantic error."""
    if error["type"] == "json_invalid":
        return f"the request body is not valid JSON: {error.get('ctx', {}).get('error', 'decode error')}"
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"][1:]).lstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def check_prompt(prompt: SpatialPrompt, *, width: int, height: int, max_points: int) -> None:
    """Refuses (422) too many points and coordinates outside the image, naming them."""
    if len(prompt.points) > max_points:
        raise HTTPException(422, f"{len(prompt.points)} points; at most {max_points} per request")
    outside = [list(p) for p in prompt.points if not (0 <= p[0] < width and 0 <= p[1] < height)]
    if outside:
        raise HTTPException(422, f"point(s) {outside} lie outside the {width}x{height} image; x must be in "
                                 f"[0, {width}) and y in [0, {height})")
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise HTTPException(422, f"box {list(prompt.box)} must satisfy 0 <= x0 < x1 <= {width} and "
                                     f"0 <= y0 < y1 <= {height}")


def check_vocabularies(objects: str | None, parts: str | None, limits: ServeLimits) -> None:
    """Refuses (422) too many, too long, empty or repeated names, in time linear in the text's length."""
    for field, names in (("objects", objects), ("parts", parts)):
        if names is None:
            continue
        if names.count(",") >= limits.max_vocabulary_names:
            raise HTTPException(422, f"{field} has {names.count(',') + 1} names; at most "
                                     f"{limits.max_vocabulary_names} per request")
        too_long = [name for name in parse_vocabulary(names) if len(name) > limits.max_name_length]
        if too_long:
            raise HTTPException(422, f"{field}: a name may have at most {limits.max_name_length} characters; "
                                     f"{too_long[0][:20]!r}... has {len(too_long[0])}")
