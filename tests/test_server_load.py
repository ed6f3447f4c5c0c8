"""The server against slow, idle and too many clients: a real uvicorn on 127.0.0.1.

Run with the settings `petseg serve` uses (uvicorn_settings), in bounded loops; no
test measures time (speeds are for benchmarks/serve_load.py). The model is the tiny
untrained U-Net of test_server.py, made slow or held at a gate where a test needs
inference to last.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import httpx
import pytest

from petseg.server import create_app
from petseg.server.uvicorn_settings import uvicorn_settings
from tests.test_server import PHOTO_HEIGHT, PHOTO_WIDTH, decode, encode, make_photo, post
from tests.test_server import model_file, segmenter  # noqa: F401  (module fixtures shared with the API tests)


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



def big_answer_app(body_bytes: int):
    """A bare ASGI app whose every answer is `body_bytes` long, sent in one message."""

    async def app(scope, receive, send):
        if scope["type"] == "http":
            headers = [(b"content-length", b"%d" % body_bytes)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"x" * body_bytes})

    return app


def request_without_reading(port: int) -> socket.socket:
    connection = socket.socket()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    connection.settimeout(10)
    connection.connect(("127.0.0.1", port))
    connection.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    return connection


def bytes_until_closed(connection: socket.socket) -> int:
    received = 0
    while chunk := connection.recv(1 << 20):
        received += len(chunk)
    return received


def test_a_client_that_stops_reading_its_answer_is_cut_off():
    """The unsent answer would otherwise wait in the server's buffer for ever (tens of MB a client)."""
    body_bytes = 32 * 1024 * 1024  # far beyond the sockets' buffers
    with running_server(big_answer_app(body_bytes), send_stall_s=0.5) as url:
        with request_without_reading(port_of(url)) as stalled:
            time.sleep(3)  # six times the stall limit without reading
            # The client gets what the kernel's socket buffers held, then the end: the rest was dropped.
            assert bytes_until_closed(stalled) < body_bytes / 2

        # A client that reads gets the whole answer, and the next one on the same connection.
        with request_without_reading(port_of(url)) as reader:
            reader.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            assert bytes_until_closed(reader) > 2 * body_bytes


# --- the command with worker processes ----------------------------------------


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
