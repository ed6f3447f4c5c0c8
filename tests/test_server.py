"""The HTTP API: every endpoint, every error code, the upload limits and the bounded queue.

The model is a tiny untrained U-Net: these tests check status codes, content types,
sizes, limits and compositing arithmetic, not cutout quality. The load tests run a
real uvicorn on 127.0.0.1 with the settings `petseg serve` uses, in bounded loops.
"""

from __future__ import annotations

import inspect
import io
import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from petseg.inference import remove_background
from petseg.server import create_app
from petseg.server.uvicorn_settings import uvicorn_settings

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
    assert "--" not in detail, f"the API names a command-line flag: {detail}"
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
    assert (info["limits"]["threads"], info["limits"]["queue_size"]) == (1, 16)


def test_favicon(client):
    page = client.get("/").text
    assert 'rel="icon"' in page and "static/favicon.svg" in page
    for path in ("/static/favicon.svg", "/favicon.ico"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in response.content


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


def test_refine_option_is_accepted(client):
    response = post(client, "/api/cutout", encode(make_photo()), refine="true")
    assert response.status_code == 200, response.text
    assert decode(response).size == (PHOTO_WIDTH, PHOTO_HEIGHT)


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
        assert_json_error(post(small_client, "/api/cutout", encode(make_photo())), 400, "photo.jpg", "megapixels")


def test_pixel_limit_refuses_an_upload_before_decoding_it(segmenter, monkeypatch):
    from PIL import ImageFile

    decoded = []
    decode_pixels = ImageFile.ImageFile.load

    def spy(image):
        decoded.append(image.size)
        return decode_pixels(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    bomb = encode(np.zeros((1500, 1500, 3), np.uint8), "PNG")  # 2.25 megapixels in a few KB
    with TestClient(create_app(segmenter=segmenter, max_pixels=2_000_000)) as small_client:
        assert_json_error(post(small_client, "/api/cutout", bomb, filename="bomb.png"), 400, "bomb.png", "megapixels")
        assert decoded == [], "the upload was decoded before its size was checked"
        # The spy does see decoding: a photo under the limit goes through it.
        assert post(small_client, "/api/cutout", encode(make_photo(), "PNG")).status_code == 200
        assert (PHOTO_WIDTH, PHOTO_HEIGHT) in decoded


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"mode": "sepia"}, ["mode", "rgba"]),
        ({"mode": "color", "bg": "not-a-colour"}, ["bg", "not-a-colour"]),
        ({"bg": "#000000"}, ["bg", "mode=color"]),
        ({"refine": "maybe"}, ["refine"]),
        ({"alpha": "fuzzy"}, ["alpha", "matting"]),
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


def test_echoed_input_is_cut_short(client):
    long_colour = "no-such-colour-" * 7000  # ~100 KB
    response = post(client, "/api/cutout", encode(make_photo()), mode="color", bg=long_colour)
    assert_json_error(response, 422, "bg:", long_colour[:100])
    assert len(response.json()["detail"]) < 250
    long_name = "a" * 400 + ".jpg"
    response = post(client, "/api/cutout", b"not a photo at all", filename=long_name)
    assert_json_error(response, 415, "a" * 100, "not an image")
    assert len(response.json()["detail"]) < 250


LIBRARY_HAS_ALPHA = "alpha" in inspect.signature(remove_background).parameters


@pytest.mark.xfail(not LIBRARY_HAS_ALPHA, reason="remove_background has no alpha choice yet (issue 11)", strict=True)
def test_alpha_field_reaches_the_library(client):
    upload = encode(make_photo(), "PNG")
    alphas = {}
    for choice in ("hard", "soft"):
        response = post(client, "/api/cutout", upload, alpha=choice)
        assert response.status_code == 200, response.text
        alphas[choice] = np.asarray(decode(response))[..., 3]
        mask = decode(post(client, "/api/mask", upload, alpha=choice))
        assert np.array_equal(np.asarray(mask), alphas[choice])
    assert set(np.unique(alphas["hard"]).tolist()) <= {0, 255}
    # The untrained model is unsure everywhere: its soft alpha has values in between.
    assert ((alphas["soft"] > 0) & (alphas["soft"] < 255)).any()


def test_missing_file_is_422(client):
    assert_json_error(client.post("/api/cutout", data={"mode": "rgba"}), 422, "file")


def test_upload_over_the_limit_is_413_before_reading_it(segmenter):
    with TestClient(create_app(segmenter=segmenter, max_upload_mb=0.1)) as small_client:
        big = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
        upload = encode(big, "PNG")  # noise does not compress: ~480 KB
        assert len(upload) > 0.2 * 1024 * 1024
        assert_json_error(post(small_client, "/api/cutout", upload), 413, "file:", "limit of 0.1 MB")


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
    assert "limit of 0.25 MB" in json.loads(body)["detail"]
    limit_chunks = (0.25 * 1024 * 1024 + 64 * 1024) / len(chunk)
    assert pulled <= limit_chunks + 2, f"read {pulled} chunks for a limit of {limit_chunks:.0f}"


# --- a real server: the socket path, slow clients, the bounded queue ---------------


@contextmanager
def running_server(app, **settings) -> Iterator[str]:
    """Serve `app` with uvicorn as `petseg serve` does, on a free 127.0.0.1 port in a thread."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_settings(**settings))
    server = uvicorn.Server(config)
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


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class SlowSegmenter:
    """Wraps a Segmenter: each prediction takes `delay` s longer and counts how many run at once.

    With a `gate`, each prediction also waits until the gate is opened (set).
    """

    def __init__(self, inner, delay: float = 0.0, gate: threading.Event | None = None):
        self.inner, self.delay, self.gate = inner, delay, gate
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
                if self.gate is not None:
                    self.gate.wait(timeout=60)
                time.sleep(self.delay)
                return method(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1

        return timed


@pytest.mark.parametrize("threads", [1, 2])
def test_inference_runs_off_the_event_loop_in_a_bounded_pool(segmenter, threads):
    gate = threading.Event()
    held = SlowSegmenter(segmenter, gate=gate)
    upload = encode(make_photo())
    with running_server(create_app(segmenter=held, threads=threads)) as url:
        with httpx.Client(base_url=url, timeout=10) as http:

            def cutout(results, index):
                results[index] = post(http, "/api/cutout", upload).status_code

            statuses = [None] * 5
            workers = [threading.Thread(target=cutout, args=(statuses, i)) for i in range(len(statuses))]
            try:
                for worker in workers:
                    worker.start()
                deadline = time.monotonic() + 20
                while held.running < threads and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert held.running == threads
                # Every thread is held inside the model, yet the event loop answers: a model
                # run on the loop would block /healthz until the gate opens (a timeout here).
                assert http.get("/healthz").status_code == 200
                assert held.running == threads and statuses == [None] * 5
            finally:
                gate.set()
                for worker in workers:
                    worker.join()
    assert statuses == [200] * 5
    assert held.most_running == threads


class Dripper:
    """A client that sends the start of a request, then one more byte each time drip() is called."""

    def __init__(self, port: int, start: bytes):
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.connection.sendall(start)

    def drip(self) -> bool:
        """Send a byte; False once the server has answered or closed."""
        if select.select([self.connection], [], [], 0)[0]:
            return False
        try:
            self.connection.sendall(b"a")
        except OSError:
            return False
        return True

    def reply(self) -> bytes:
        received = b""
        while True:
            try:
                chunk = self.connection.recv(65536)
            except OSError:  # the server closed with our unread bytes in its buffer
                return received
            if not chunk:
                return received
            received += chunk


def dripping_headers(port: int) -> Dripper:
    return Dripper(port, b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")


def dripping_body(port: int) -> Dripper:
    return Dripper(port, (
        b"POST /api/cutout HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.jpg"\r\n\r\n'
    ))


def test_idle_and_dripping_clients_do_not_block_the_page_or_cutouts(segmenter):
    upload = encode(make_photo())
    with running_server(create_app(segmenter=segmenter)) as url:
        port = port_of(url)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(30)]
        drippers = [dripping_headers(port), dripping_headers(port), dripping_body(port), dripping_body(port)]
        stop = threading.Event()

        def drip_every_second():
            while not stop.wait(1.0):
                for dripper in drippers:
                    dripper.drip()

        dripping = threading.Thread(target=drip_every_second, daemon=True)
        dripping.start()
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                for _ in range(3):
                    assert http.get("/healthz").status_code == 200
                    assert http.get("/").status_code == 200
                    response = post(http, "/api/cutout", upload)
                    assert response.status_code == 200, response.text
                    assert decode(response).size == (PHOTO_WIDTH, PHOTO_HEIGHT)
                    time.sleep(0.5)
        finally:
            stop.set()
            dripping.join()
            for connection in idle + [dripper.connection for dripper in drippers]:
                connection.close()


def drip_until_answered(dripper: Dripper, drips: int = 50, pause_s: float = 0.2) -> bytes:
    """Drip for at most drips * pause_s seconds (far beyond the deadline under test); the reply."""
    for _ in range(drips):
        if not dripper.drip():
            return dripper.reply()
        time.sleep(pause_s)
    return b"(still open after the loop)"


def test_slow_request_headers_and_idle_connections_get_408(segmenter):
    with running_server(create_app(segmenter=segmenter), header_timeout_s=1) as url:
        port = port_of(url)
        idle = Dripper(port, b"")
        reply = drip_until_answered(dripping_headers(port))
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"headers" in reply
        # A connection that never sends anything is closed the same way.
        assert idle.reply().startswith(b"HTTP/1.1 408")


def test_endless_request_headers_get_400(segmenter):
    with running_server(create_app(segmenter=segmenter)) as url:
        endless = Dripper(port_of(url), b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        sent = 0
        try:
            while sent < 1024 * 1024 and not select.select([endless.connection], [], [], 0.01)[0]:
                endless.connection.sendall(b"a" * 1024)
                sent += 1024
        except OSError:
            pass  # the server stopped reading
        assert endless.reply().startswith(b"HTTP/1.1 400")
        assert sent < 256 * 1024, f"the server read {sent} bytes of headers"


def test_slow_upload_body_gets_408(segmenter):
    with running_server(create_app(segmenter=segmenter, read_timeout_s=1)) as url:
        reply = drip_until_answered(dripping_body(port_of(url)))
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        detail = json.loads(reply.split(b"\r\n\r\n", 1)[1])["detail"]
        assert detail.startswith("file:") and "1 s" in detail


def test_overload_gets_503_with_retry_after_and_no_resets(segmenter):
    """300 requests at 16 concurrent against 1 thread and a queue of 2: 200 or 503, never a reset."""
    slow = SlowSegmenter(segmenter, delay=0.05)
    upload = encode(make_photo())
    with running_server(create_app(segmenter=slow, threads=1, queue_size=2)) as url:
        health, done = [], threading.Event()

        def check_health():
            with httpx.Client(base_url=url, timeout=10) as http:
                while not done.is_set():
                    health.append(http.get("/healthz").status_code)
                    time.sleep(0.05)

        def cutout(http, index):
            try:
                response = post(http, "/api/cutout", upload)
            except httpx.TransportError as error:
                return repr(error), None, None
            busy = response.json() if response.status_code == 503 else None
            return response.status_code, response.headers.get("retry-after"), busy

        checker = threading.Thread(target=check_health)
        checker.start()
        try:
            limits = httpx.Limits(max_connections=16)
            with httpx.Client(base_url=url, timeout=30, limits=limits) as http, ThreadPoolExecutor(16) as pool:
                results = list(pool.map(lambda index: cutout(http, index), range(300)))
        finally:
            done.set()
            checker.join()
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 503}, sorted(set(map(str, statuses)))
    assert statuses.count(200) > 0 and statuses.count(503) > 0, "the queue never filled: is it bounded?"
    for status, retry_after, body in results:
        if status == 503:
            assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
            assert "busy" in body["detail"]
    assert health and set(health) == {200}
    assert slow.most_running == 1


def test_chunked_upload_over_a_socket_gets_413_early(segmenter):
    limit_mb, offered = 0.25, 64 * 1024 * 1024
    with running_server(create_app(segmenter=segmenter, max_upload_mb=limit_mb)) as url:
        port = port_of(url)
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
            while b"limit of 0.25 MB" not in reply:  # the body may come in a later packet than the headers
                try:
                    received = connection.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not received:
                    break
                reply += received
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"limit of 0.25 MB" in reply
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


def test_app_from_environment(model_file, monkeypatch):
    from petseg.errors import PetsegError
    from petseg.server import app_from_environment

    monkeypatch.setenv("PETSEG_MODEL", str(model_file))
    monkeypatch.setenv("PETSEG_THREADS", "3")
    monkeypatch.setenv("PETSEG_QUEUE", "0")
    with TestClient(app_from_environment()) as client:
        limits = client.get("/api/model").json()["limits"]
        assert (limits["threads"], limits["queue_size"]) == (3, 0)
        assert post(client, "/api/cutout", encode(make_photo())).status_code == 200
    monkeypatch.setenv("PETSEG_THREADS", "many")
    with pytest.raises(PetsegError, match="PETSEG_THREADS='many'"):
        app_from_environment()


@pytest.mark.slow
def test_serve_command_with_worker_processes(model_file):
    """`petseg serve --workers 2` runs under uvicorn's process manager and serves cutouts."""
    import subprocess
    import sys

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    command = [sys.executable, "-m", "petseg", "serve", "--model", str(model_file), "--port", str(port),
               "--workers", "2", "--threads", "2", "--queue", "5"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(600):  # up to 60 s for three model loads on busy cores
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            limits = http.get("/api/model").json()["limits"]
            assert (limits["threads"], limits["queue_size"]) == (2, 5)
            response = post(http, "/api/cutout", encode(make_photo()))
            assert response.status_code == 200 and decode(response).size == (PHOTO_WIDTH, PHOTO_HEIGHT)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert output.count("Started server process") == 2, output


def test_create_app_rejects_bad_settings(segmenter):
    from petseg.errors import PetsegError

    bad = (({"threads": 0}, "threads"), ({"queue_size": -1}, "queue_size"), ({"max_upload_mb": 0}, "max_upload_mb"),
           ({"read_timeout_s": 0}, "read_timeout_s"))
    for settings, word in bad:
        with pytest.raises(PetsegError, match=word):
            create_app(segmenter=segmenter, **settings)
