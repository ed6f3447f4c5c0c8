"""Command: serve (the web page and HTTP API, see petseg.server)."""

from __future__ import annotations

import os
from typing import Optional

import typer

from petseg.cli.app import app
from petseg.limits import (MAX_READ_TIMEOUT_S, MAX_SERVER_WORKERS, MAX_UPLOAD_MB, MIN_READ_TIMEOUT_S, MIN_UPLOAD_MB,
                           SERVE_MAX_PIXELS)


@app.command()
def serve(
    model: Optional[str] = typer.Option(
        None, "--model", help="Run directory, .safetensors or .onnx model file; default: the bundled model."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port to listen on."),
    workers: int = typer.Option(
        1, min=1, max=MAX_SERVER_WORKERS, help="Server processes, each with its own copy of the model."
    ),
    threads: int = typer.Option(1, min=1, help="Photos each process works on at the same time."),
    queue: int = typer.Option(
        16, min=0, help="Photos that may wait for a free thread in each process; more get 503 + Retry-After."
    ),
    max_upload_mb: float = typer.Option(20.0, min=MIN_UPLOAD_MB, max=MAX_UPLOAD_MB, help="Largest accepted upload, in megabytes."),
    max_pixels: int = typer.Option(SERVE_MAX_PIXELS, min=1, help="Largest accepted image, in pixels (width x height)."),
    read_timeout: float = typer.Option(
        60.0, min=MIN_READ_TIMEOUT_S, max=MAX_READ_TIMEOUT_S, help="Seconds an upload may take to arrive; slower ones get 408."
    ),
    flip_tta: bool = typer.Option(
        False, "--flip-tta", help="Average matted cutouts with the mirrored photo's prediction, as `petseg cutout` does: "
        "a cleaner background, but 2x model time (about 15 instead of 21 requests/s on 2 cores)."
    ),
) -> None:
    """Serve a web page and an HTTP API that cut pets out of photos."""
    import uvicorn

    from petseg.server import create_app
    from petseg.server.environment import export_settings
    from petseg.server.uvicorn_settings import uvicorn_settings

    settings = dict(
        model=model, threads=threads, queue_size=queue, max_upload_mb=max_upload_mb,
        max_pixels=max_pixels, read_timeout_s=read_timeout, flip_tta=flip_tta,
    )
    # Loaded here even when worker processes load their own, so a bad model fails in one line at once.
    web_app = create_app(**settings)
    typer.echo(f"petseg: serving on http://{host}:{port}/ (API docs at /docs)", err=True)
    if workers == 1:
        uvicorn.run(web_app, host=host, port=port, log_level="info", **uvicorn_settings())
        return
    del web_app
    export_settings(os.environ, **settings)
    uvicorn.run(
        "petseg.server:app_from_environment", factory=True, workers=workers,
        host=host, port=port, log_level="info", **uvicorn_settings(),
    )
