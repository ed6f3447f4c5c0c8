"""Load benchmark for `petseg serve`: a bounded burst of real Oxford-size photos.

Starts `petseg serve` on 127.0.0.1 (a free port), sends --requests POST /api/cutout
requests with --concurrency in flight, and prints ONE JSON line: requests/second,
p50/p99 latency, the error count (must be 0) and the server's RSS before and after
the burst (after a warm-up, so model loading is not counted as growth).

    .venv/bin/python benchmarks/serve_load.py [--model MODEL] [--workers 2]

Without --model it serves the bundled model, or, while there is none, an untrained
unet_mobilenetv3 (same compute as a trained one).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = REPO.parent / "shared" / "data" / "oxford-pets-sample" / "images"
PETSEG = Path(sys.executable).with_name("petseg")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def default_model(scratch: Path) -> tuple[str | None, str]:
    """The bundled model if installed, else an untrained unet_mobilenetv3 written to scratch."""
    from petseg.errors import PetsegError
    from petseg.models.files import bundled_model_path

    try:
        return None, bundled_model_path().name
    except PetsegError:
        from petseg.models import create_model, save_model

        path = scratch / "unet_mobilenetv3-untrained.safetensors"
        save_model(create_model("unet_mobilenetv3", pretrained=False), path)
        return str(path), "unet_mobilenetv3 (untrained)"


def start_server(model: str | None, port: int, workers: int, log) -> subprocess.Popen:
    command = [str(PETSEG), "serve", "--port", str(port), "--workers", str(workers)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model for the server (default: bundled, else untrained unet_mobilenetv3)")
    parser.add_argument("--requests", type=int, default=200, help="requests in the burst")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--photos", type=int, default=50, help="distinct sample photos, sent in turn")
    args = parser.parse_args()

    import httpx

    photos = sorted(SAMPLE_IMAGES.glob("*.jpg"))[: args.photos]
    if not photos:
        sys.exit(f"error: no photos at {SAMPLE_IMAGES} (the shared Oxford-IIIT Pet sample)")
    uploads = [(photo.name, photo.read_bytes()) for photo in photos]

    with tempfile.TemporaryDirectory() as scratch, open(Path(scratch) / "server.log", "wb") as log:
        model, model_name = (args.model, args.model) if args.model else default_model(Path(scratch))
        port = free_port()
        server = start_server(model, port, args.workers, log)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                wait_until_healthy(client, server)

                def cutout(index: int) -> tuple[float, int]:
                    name, data = uploads[index % len(uploads)]
                    started = time.perf_counter()
                    try:
                        status = client.post("/api/cutout", files={"file": (name, data)}).status_code
                    except httpx.HTTPError:
                        status = 0
                    return time.perf_counter() - started, status

                with ThreadPoolExecutor(args.concurrency) as pool:
                    list(pool.map(cutout, range(args.concurrency * 2)))  # warm-up: first-call allocations
                    rss_before = rss_mb(server.pid)
                    burst_started = time.perf_counter()
                    results = list(pool.map(cutout, range(args.requests)))
                    elapsed = time.perf_counter() - burst_started
                rss_after = rss_mb(server.pid)
        except Exception:
            log.flush()
            sys.stderr.write((Path(scratch) / "server.log").read_text()[-2000:])
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)

    latencies_ms = [seconds * 1000 for seconds, status in results if status == 200]
    errors = sum(status != 200 for _, status in results)
    print(json.dumps({
        "benchmark": "serve_load",
        "model": model_name,
        "photos": len(uploads),
        "mean_photo_kb": round(statistics.mean(len(data) for _, data in uploads) / 1024, 1),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "requests_per_s": round(args.requests / elapsed, 2),
        "p50_ms": round(percentile(latencies_ms, 0.50), 1) if latencies_ms else None,
        "p99_ms": round(percentile(latencies_ms, 0.99), 1) if latencies_ms else None,
        "errors": errors,
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
    }))


if __name__ == "__main__":
    main()
