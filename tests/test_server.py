"""The HTTP API: every endpoint, every error code, the upload limit and the bounded pool.

The model is a tiny untrained U-Net: these tests check status codes, content types,
sizes, limits and compositing arithmetic, not cutout quality.
"""

from __future__ import annotations

import io
import json
import select
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from petseg.server import create_app  # noqa: E402

PHOTO_HEIGHT, PHOTO_WIDTH = 90, 120


def encode(image: np.ndarray, format: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format, **options)
    return buffer.getvalue()


def make_photo(height: int = PHOTO_HEIGHT, width: int = PHOTO_WIDTH, seed: int = 0) -> np.ndarray:
    """A smooth gradient with a bright disc: compresses like a photo, decodes the same everywhere."""
    rows, columns = np.mgrid[0:height, 0:width]
    photo = np.stack([rows * 255 // height, columns * 255 // width, np.full_like(rows, 60 + seed)], axis=-1)
    disc = (rows - height / 2) ** 2 + (columns - width / 2) ** 2 < (min(height, width) / 3) ** 2
    photo[disc] = (230, 200, 150)
    return photo.astype(np.uint8)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from petseg.models import create_model, save_model

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(create_model("unet_diy", width=8, image_size=64), path)
    return path


@pytest.fixture(scope="module")
def segmenter(model_file):
    from petseg.inference import Segmenter

    return Segmenter.load(model_file)


@pytest.fixture(scope="module")
def client(model_file):
    # Loads the model through create_app itself, as `petseg serve` does.
    with TestClient(create_app(model_file)) as test_client:
        yield test_client


def post(client, path: str, content: bytes, filename: str = "photo.jpg", **fields):
    return client.post(path, files={"file": (filename, content, "application/octet-stream")}, data=fields)


def decode(response) -> Image.Image:
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def assert_json_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for word in words:
        assert word in detail, detail


# --- endpoints ----------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_page_and_its_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset, content_type in (("static/app.js", "javascript"), ("static/style.css", "text/css")):
        assert asset in page.text
        response = client.get("/" + asset)
        assert response.status_code == 200 and content_type in response.headers["content-type"]


def test_model_info(client):
    info = client.get("/api/model").json()
    assert info["config"]["architecture"] == "unet_diy"
    assert info["config"]["image_size"] == 64
    assert info["labels"] == ["pet", "background", "border"]
    assert info["limits"]["max_upload_bytes"] == 20 * 1024 * 1024


def test_openapi_docs_list_the_api(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/cutout", "/api/mask", "/api/model", "/healthz"} <= set(paths)


@pytest.mark.parametrize("format", ["JPEG", "PNG", "WEBP"])
def test_cutout_is_a_transparent_png_at_the_photo_size(client, format):
    photo = make_photo()
    upload = encode(photo, format, **({"quality": 95} if format != "PNG" else {}))
    sent = np.asarray(Image.open(io.BytesIO(upload)).convert("RGB"))
    response = post(client, "/api/cutout", upload, filename=f"my pet.{format.lower()}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert 'filename="my_pet-cutout.png"' in response.headers["content-disposition"]
    cutout = decode(response)
    assert cutout.mode == "RGBA" and cutout.size == (PHOTO_WIDTH, PHOTO_HEIGHT)
    # The colour channels are the decoded upload itself; only alpha is new.
    assert np.array_equal(np.asarray(cutout)[..., :3], sent)


def test_color_background_is_a_jpeg_composite_over_bg(client):
    upload = encode(make_photo(), "PNG")
    rgba = np.asarray(decode(post(client, "/api/cutout", upload)), dtype=np.float64)
    response = post(client, "/api/cutout", upload, mode="color", bg="#00ff00")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    composite = decode(response)
    assert composite.mode == "RGB" and composite.size == (PHOTO_WIDTH, PHOTO_HEIGHT)
    alpha = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * alpha + np.array([0, 255, 0]) * (1 - alpha)
    # JPEG is lossy: compare the mean error, with room for chroma subsampling.
    assert np.abs(np.asarray(composite, dtype=np.float64) - expected).mean() < 6.0


def test_alpha_option_reaches_the_cutout(client):
    """hard gives a two-level alpha, soft the network's in-between values, matting (the default) neither haze everywhere."""
    upload = encode(make_photo())
    alphas = {}
    for kind in ("hard", "soft", "matting"):
        response = post(client, "/api/mask", upload, alpha=kind)
        assert response.status_code == 200, response.text
        alphas[kind] = np.asarray(decode(response))
        assert alphas[kind].shape == (PHOTO_HEIGHT, PHOTO_WIDTH)
    assert set(np.unique(alphas["hard"])) <= {0, 255}
    semi = {kind: ((alpha > 25) & (alpha < 230)).mean() for kind, alpha in alphas.items()}
    assert semi["soft"] > semi["matting"]
    default = np.asarray(decode(post(client, "/api/mask", upload)))
    np.testing.assert_array_equal(default, alphas["matting"])


def test_mask_and_labels(client):
    upload = encode(make_photo())
    mask = post(client, "/api/mask", upload)
    assert mask.status_code == 200 and mask.headers["content-type"] == "image/png"
    assert decode(mask).mode == "L" and decode(mask).size == (PHOTO_WIDTH, PHOTO_HEIGHT)
    labels = post(client, "/api/mask", upload, mode="labels")
    assert labels.status_code == 200, labels.text
    values = np.unique(np.asarray(decode(labels)))
    assert decode(labels).size == (PHOTO_WIDTH, PHOTO_HEIGHT)
    assert set(values.tolist()) <= {1, 2, 3}  # the dataset's own trimap encoding


def test_exif_rotated_photo_comes_back_upright(client):
    photo = make_photo()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    response = post(client, "/api/cutout", encode(photo, "JPEG", exif=exif.tobytes()))
    assert decode(response).size == (PHOTO_HEIGHT, PHOTO_WIDTH)


# --- errors -------------------------------------------------------------------


def test_not_an_image_is_415(client):
    assert_json_error(post(client, "/api/cutout", b"hello, I am text", filename="notes.jpg"), 415, "not an image")
    assert_json_error(post(client, "/api/mask", b"", filename="empty.png"), 415, "not an image")


def test_corrupt_image_is_400(client):
    truncated = encode(make_photo(), "JPEG")[:600]
    assert_json_error(post(client, "/api/cutout", truncated), 400, "photo.jpg")


def test_too_many_pixels_is_400(segmenter):
    with TestClient(create_app(segmenter=segmenter, max_pixels=1000)) as small_client:
        assert_json_error(post(small_client, "/api/cutout", encode(make_photo())), 400, "megapixels", "--max-pixels")


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"mode": "sepia"}, ["mode", "rgba"]),
        ({"mode": "color", "bg": "not-a-colour"}, ["bg", "not-a-colour"]),
        ({"bg": "#000000"}, ["bg", "mode=color"]),
        ({"alpha": "maybe"}, ["alpha"]),
    ],
)
def test_bad_options_are_422(client, fields, words):
    assert_json_error(post(client, "/api/cutout", encode(make_photo()), **fields), 422, *words)


def test_inference_works_without_the_lifespan(segmenter):
    """A bare TestClient and an app mounted in another never run this app's lifespan."""
    from fastapi import FastAPI

    bare = TestClient(create_app(segmenter=segmenter))  # no `with`: no startup
    assert post(bare, "/api/cutout", encode(make_photo())).status_code == 200
    outer = FastAPI()
    outer.mount("/petseg", create_app(segmenter=segmenter))
    with TestClient(outer) as mounted:
        assert post(mounted, "/petseg/api/cutout", encode(make_photo())).status_code == 200
        assert post(mounted, "/petseg/api/mask", encode(make_photo())).status_code == 200


def test_background_colours_are_parsed_like_the_cli(client):
    upload = encode(make_photo())
    for colour in ("  lime ", "rgb(0,255,0)", "#0f0"):
        response = post(client, "/api/cutout", upload, mode="color", bg=colour)
        assert response.status_code == 200, (colour, response.text)
    assert_json_error(post(client, "/api/cutout", upload, mode="color", bg="#12345"), 422, "bg:", "#12345")


def test_missing_file_is_422(client):
    assert_json_error(client.post("/api/cutout", data={"mode": "rgba"}), 422, "file")


def test_upload_over_the_limit_is_413_before_reading_it(segmenter):
    with TestClient(create_app(segmenter=segmenter, max_upload_mb=0.1)) as small_client:
        big = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
        upload = encode(big, "PNG")  # noise does not compress: ~480 KB
        assert len(upload) > 0.2 * 1024 * 1024
        assert_json_error(post(small_client, "/api/cutout", upload), 413, "0.1 MB", "--max-upload-mb")


def test_upload_without_length_is_cut_off_once_it_passes_the_limit(segmenter):
    """A chunked upload is refused as soon as the byte count passes the limit, not after reading it all."""
    import anyio

    app = create_app(segmenter=segmenter, max_upload_mb=0.25)
    chunk, chunks_offered = b"\0" * 16384, 2000  # 32 MB offered
    boundary = "petsegboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": head if pulled == 1 else chunk, "more_body": pulled < chunks_offered}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/cutout", "raw_path": b"/api/cutout", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80), "state": {},
        "headers": [(b"host", b"test"), (b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
    }
    anyio.run(app, scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    assert start["status"] == 413
    assert "--max-upload-mb" in json.loads(body)["detail"]
    limit_chunks = (0.25 * 1024 * 1024 + 64 * 1024) / len(chunk)
    assert pulled <= limit_chunks + 2, f"read {pulled} chunks for a limit of {limit_chunks:.0f}"


# --- a real server: the socket path and the bounded pool -----------------------


@contextmanager
def running_server(app) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


class SlowSegmenter:
    """Wraps a Segmenter: each prediction takes `delay` s longer and counts how many run at once."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay
        self.running = self.most_running = 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        method = getattr(self.inner, name)
        return self._timed(method) if name.startswith("predict") else method

    def _timed(self, method):
        def timed(*args, **kwargs):
            with self.lock:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
            try:
                time.sleep(self.delay)
                return method(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1

        return timed


@pytest.mark.parametrize("workers", [1, 2])
def test_inference_runs_off_the_event_loop_in_a_bounded_pool(segmenter, workers):
    import httpx

    slow = SlowSegmenter(segmenter, delay=0.4)
    upload = encode(make_photo())
    with running_server(create_app(segmenter=slow, workers=workers)) as url:
        with httpx.Client(base_url=url, timeout=30) as http:

            def cutout(results, index):
                results[index] = post(http, "/api/cutout", upload).status_code

            statuses = [None] * 5
            threads = [threading.Thread(target=cutout, args=(statuses, i)) for i in range(len(statuses))]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 20
            while slow.running < workers and time.monotonic() < deadline:
                time.sleep(0.01)
            # The loop still answers while every worker is busy (a blocked loop would
            # answer only after the five 0.4 s predictions).
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            assert time.monotonic() - started < 1.0
            for thread in threads:
                thread.join()
    assert statuses == [200] * 5
    assert slow.most_running == workers


def test_chunked_upload_over_a_socket_gets_413_early(segmenter):
    limit_mb, offered = 0.25, 64 * 1024 * 1024
    with running_server(create_app(segmenter=segmenter, max_upload_mb=limit_mb)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(
                b"POST /api/cutout HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            )
            part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
            connection.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            chunk, sent = b"\0" * 65536, 0
            try:
                while sent < offered and not select.select([connection], [], [], 0)[0]:
                    connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped reading: what we want
            reply = b""
            while b"--max-upload-mb" not in reply:  # the body may come in a later packet than the headers
                try:
                    received = connection.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not received:
                    break
                reply += received
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"--max-upload-mb" in reply
    # Socket buffers hold a few MB at most; the server did not wait for all 64 MB.
    assert sent < offered / 4, f"sent {sent} bytes before the answer"


# --- the command ----------------------------------------------------------------


def test_serve_command_reports_a_bad_model_in_one_line(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "missing.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "petseg", "serve", "--model", str(missing), "--port", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and "missing.safetensors" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_create_app_rejects_bad_settings(segmenter):
    from petseg.errors import PetsegError

    for settings, word in (({"workers": 0}, "--workers"), ({"max_upload_mb": 0}, "--max-upload-mb")):
        with pytest.raises(PetsegError, match=word):
            create_app(segmenter=segmenter, **settings)
