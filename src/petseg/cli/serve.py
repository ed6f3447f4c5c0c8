"""Command: serve (the web page and HTTP API, see petseg.server)."""

from __future__ import annotations

from typing import Optional

import typer

from petseg.cli.app import app
from petseg.limits import DEFAULT_MAX_PIXELS

# Requests beyond this many per worker (queued or running) get 503 at once, so a
# burst cannot pile up uploads in memory while it waits for the model.
QUEUED_REQUESTS_PER_WORKER = 16


@app.command()
def serve(
    model: Optional[str] = typer.Option(
        None, "--model", help="Run directory, .safetensors or .onnx model file; default: the bundled model."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port to listen on."),
    workers: int = typer.Option(1, min=1, help="Images processed at the same time (inference threads)."),
    max_upload_mb: float = typer.Option(20.0, min=0.001, help="Largest accepted upload, in megabytes."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, min=1, help="Largest accepted image, in pixels (width x height)."),
) -> None:
    """Serve a web page and an HTTP API that cut pets out of photos."""
    import uvicorn

    from petseg.server import create_app

    web_app = create_app(model, workers=workers, max_upload_mb=max_upload_mb, max_pixels=max_pixels)
    typer.echo(f"petseg: serving on http://{host}:{port}/ (API docs at /docs)", err=True)
    uvicorn.run(
        web_app,
        host=host,
        port=port,
        limit_concurrency=workers * QUEUED_REQUESTS_PER_WORKER,
        log_level="info",
    )
