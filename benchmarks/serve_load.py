"""Load benchmark for `petseg serve`: a bounded burst of real Oxford-size photos.

Starts `petseg serve` on 127.0.0.1 (a free port) and first times /healthz while 30 idle
connections and 4 clients dripping a byte a second are open. Then it sends --requests
POST /api/cutout requests with --concurrency in flight, timing /healthz alongside, and
prints ONE JSON line: requests/second, p50/p99 latency of the answers, the counts of
200, 503, other statuses and connection resets, /healthz latencies, and the server's
RSS before and after the burst (after a warm-up, so model loading is not growth).

    .venv/bin/python benchmarks/serve_load.py [--model MODEL] [--threads 2] [--alpha matting|hard|soft]
    .venv/bin/python benchmarks/serve_load.py --overload     # 32 in flight: 503s, no resets

In the normal mode every request must get 200; in --overload mode (concurrency 32
unless given) the queue fills, and each request must get 200 or 503, never a reset.

Without --model it serves the bundled model, or, while there is none, an untrained
unet_mobilenetv3 (same compute as a trained one).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = REPO.parent / "shared" / "data" / "oxford-pets-sample" / "images"
OVERLOAD_CONCURRENCY = 32
IDLE_CONNECTIONS, DRIPPING_CLIENTS = 30, 4
RESET = "reset"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds a process has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def default_model(scratch: Path) -> tuple[str | None, str]:
    """The bundled model if installed, else an untrained unet_mobilenetv3 written to scratch."""
    from petseg.errors import PetsegError
    from petseg.models.files import bundled_model_path

    try:
        return None, bundled_model_path(".onnx").name  # what `petseg serve` runs by default
    except PetsegError:
        from petseg.models import create_model, save_model

        path = scratch / "unet_mobilenetv3-untrained.safetensors"
        save_model(create_model("unet_mobilenetv3", pretrained=False), path)
        return str(path), "unet_mobilenetv3 (untrained)"


def start_server(model: str | None, port: int, threads: int, queue: int, log) -> subprocess.Popen:
    # `python -m petseg` runs the petseg this interpreter imports (PYTHONPATH=src for a checkout).
    command = [sys.executable, "-m", "petseg", "serve", "--port", str(port), "--threads", str(threads)]
    command += ["--queue", str(queue)]
    if model:
        command += ["--model", model]
    return subprocess.Popen(command, stdout=log, stderr=log)


def wait_until_healthy(client, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"petseg serve exited with code {server.returncode}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.2)
    raise RuntimeError("petseg serve did not become healthy in time")


def healthz_ms(client) -> float:
    started = time.perf_counter()
    status = client.get("/healthz").status_code
    if status != 200:
        raise RuntimeError(f"/healthz answered {status}")
    return (time.perf_counter() - started) * 1000


def healthz_beside_slow_clients(client, port: int, checks: int = 10) -> list[float]:
    """/healthz latencies while idle and dripping connections are open."""
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE_CONNECTIONS)]
    dripping = [socket.create_connection(("127.0.0.1", port)) for _ in range(DRIPPING_CLIENTS)]
    try:
        for index, connection in enumerate(dripping):
            if index % 2:  # half drip their headers, half a photo's body
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
            else:
                connection.sendall(
                    b"POST /api/cutout HTTP/1.1\r\nHost: bench\r\nContent-Length: 100000\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
                )
        latencies = []
        for _ in range(checks):
            for connection in dripping:
                try:
                    connection.sendall(b"a")
                except OSError:
                    pass  # the server timed it out: what it should do
            latencies.append(healthz_ms(client))
            time.sleep(1.0)
        return latencies
    finally:
        for connection in idle + dripping:
            connection.close()


def summary_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": round(percentile(values, 0.5), 1), "p99": round(percentile(values, 0.99), 1),
            "max": round(max(values), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model for the server (default: bundled, else untrained unet_mobilenetv3)")
    parser.add_argument("--requests", type=int, default=200, help="requests in the burst")
    parser.add_argument(
        "--concurrency", type=int, help=f"requests in flight at once (8; {OVERLOAD_CONCURRENCY} with --overload)"
    )
    parser.add_argument(
        "--overload", action="store_true", help="more requests than the server takes: count 503s and resets"
    )
    parser.add_argument("--threads", type=int, default=2, help="the server's --threads")
    parser.add_argument("--queue", type=int, default=16, help="the server's --queue")
    parser.add_argument("--photos", type=int, default=50, help="distinct sample photos, sent in turn")
    parser.add_argument("--alpha", default="matting", choices=("matting", "hard", "soft"),
                        help="the cutouts' alpha form field (matting: the server's default)")
    args = parser.parse_args()
    concurrency = args.concurrency or (OVERLOAD_CONCURRENCY if args.overload else 8)

    import httpx

    photos = sorted(SAMPLE_IMAGES.glob("*.jpg"))[: args.photos]
    if not photos:
        sys.exit(f"error: no photos at {SAMPLE_IMAGES} (the shared Oxford-IIIT Pet sample)")
    uploads = [(photo.name, photo.read_bytes()) for photo in photos]

    with tempfile.TemporaryDirectory() as scratch, open(Path(scratch) / "server.log", "wb") as log:
        model, model_name = (args.model, args.model) if args.model else default_model(Path(scratch))
        port = free_port()
        server = start_server(model, port, args.threads, args.queue, log)
        try:
            limits = httpx.Limits(max_connections=concurrency)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as client:
                wait_until_healthy(client, server)
                slow_clients_ms = healthz_beside_slow_clients(client, port)

                def cutout(index: int) -> tuple[float, int | str]:
                    name, data = uploads[index % len(uploads)]
                    started = time.perf_counter()
                    try:
                        status: int | str = client.post("/api/cutout", files={"file": (name, data)}, data={"alpha": args.alpha}).status_code
                    except httpx.TransportError:
                        status = RESET
                    return time.perf_counter() - started, status

                with ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(cutout, range(min(concurrency, 8) * 2)))  # warm-up: first-call allocations
                    rss_before, cpu_before = rss_mb(server.pid), cpu_s(server.pid)
                    under_load_ms: list[float] = []
                    burst_over = threading.Event()

                    def watch_health() -> None:
                        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as watcher:
                            while not burst_over.wait(0.25):
                                under_load_ms.append(healthz_ms(watcher))

                    watcher = threading.Thread(target=watch_health)
                    watcher.start()
                    burst_started = time.perf_counter()
                    try:
                        results = list(pool.map(cutout, range(args.requests)))
                    finally:
                        elapsed = time.perf_counter() - burst_started
                        burst_over.set()
                        watcher.join()
                rss_after, server_cpu = rss_mb(server.pid), cpu_s(server.pid) - cpu_before
        except Exception:
            log.flush()
            sys.stderr.write((Path(scratch) / "server.log").read_text()[-2000:])
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)

    counts = collections.Counter(status for _, status in results)
    ok_ms = [seconds * 1000 for seconds, status in results if status == 200]
    answered_ms = [seconds * 1000 for seconds, status in results if status != RESET]
    print(json.dumps({
        "benchmark": "serve_load",
        "mode": "overload" if args.overload else "normal",
        "model": model_name,
        "alpha": args.alpha,
        "photos": len(uploads),
        "mean_photo_kb": round(statistics.mean(len(data) for _, data in uploads) / 1024, 1),
        "requests": args.requests,
        "concurrency": concurrency,
        "threads": args.threads,
        "queue": args.queue,
        "cpus": os.cpu_count(),
        "requests_per_s": round(args.requests / elapsed, 2),
        "ok_per_s": round(counts[200] / elapsed, 2),
        "status_200": counts[200],
        "status_503": counts[503],
        "resets": counts[RESET],
        "other_statuses": {str(status): count for status, count in counts.items() if status not in (200, 503, RESET)},
        # CPU time the server spent per request (all its threads), beside the wall-clock rate.
        "server_cpu_ms_per_request": round(server_cpu / args.requests * 1000, 1),
        "p50_ms": round(percentile(ok_ms, 0.50), 1) if ok_ms else None,
        "p99_ms": round(percentile(ok_ms, 0.99), 1) if ok_ms else None,
        "p99_answered_ms": round(percentile(answered_ms, 0.99), 1) if answered_ms else None,
        "healthz_under_load_ms": summary_ms(under_load_ms),
        "healthz_idle_drip_ms": summary_ms(slow_clients_ms),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
    }))


if __name__ == "__main__":
    main()
