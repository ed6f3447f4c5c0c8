"""Compare training runs side by side: the notebook's "select a model to try", measured.

Each run contributes its model size (parameters, GFLOPs at 224), CPU latency at 224,
how its encoder started (ImageNet or random), training length and time, and the best
validation metrics. The table goes to the
terminal, to Markdown and CSV, and the metrics to a bar chart.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from petseg.errors import PetsegError, clipped
from petseg.limits import check_threads, check_whole_number, finite_float
from petseg.models.config import IMAGE_SIZE_RANGE
from petseg.atomic import prepare_output_folder, refuse_to_overwrite, write_text_atomic
from petseg.run_dir import CONFIG_FILE, HISTORY_JSON_FILE, SUMMARY_FILE, best_model_file
from petseg.text_files import parse_json, read_text_file
from petseg.train.history import read_history

OUTPUT_NAMES = ("comparison.md", "comparison.csv", "comparison.png")
CHART_METRICS = {"pixel accuracy": "pixel_accuracy", "mIoU": "miou", "fg IoU": "fg_iou"}
# (column title, RunSummary field, format)
COLUMNS = (
    ("run", "name", "{}"),
    ("model", "model", "{}"),
    ("init", "init", "{}"),
    ("params (M)", "parameters_m", "{:.2f}"),
    ("GFLOPs", "gflops", "{:.2f}"),
    ("CPU ms", "latency_ms", "{:.1f}"),
    ("epochs", "epochs", "{}"),
    ("train time (min)", "train_minutes", "{:.1f}"),
    ("pixel acc", "pixel_accuracy", "{:.4f}"),
    ("mIoU", "miou", "{:.4f}"),
    ("fg IoU", "fg_iou", "{:.4f}"),
)


@dataclass
class RunSummary:
    name: str
    run_dir: str
    model: str
    init: str  # how the encoder started: ImageNet, a weights file, or random
    parameters_m: float
    gflops: float
    latency_ms: float
    epochs: int
    train_minutes: float
    pixel_accuracy: float
    miou: float
    fg_iou: float


def measure_latencies(models: list, image_size: int = 224, repeats: int = 10, warmup: int = 2,
                      threads: int | None = 1) -> list[float]:
    """Median CPU milliseconds of one image's forward pass, for each model, on `threads` threads
    (None: torch's default).

    Every model is warmed up first (the first calls pay for allocation and kernel
    selection), then timed in `repeats` rounds that visit every model once, each round
    starting one model later: a machine that speeds up or slows down meanwhile weighs on
    all of them alike. One thread by default: on a busy machine, threads waiting for each
    other made two copies of one model differ by 65% (1619 vs 2671 ms); on one, by 0.2-3%.
    """
    import torch

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _timed_rounds([model.eval().cpu() for model in models], image_size, repeats, warmup)
    finally:
        torch.set_num_threads(previous_threads)


def _timed_rounds(models: list, image_size: int, repeats: int, warmup: int) -> list[float]:
    import torch

    image = torch.randn(1, 3, image_size, image_size)
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for model in models:
            for _ in range(warmup):
                model(image)
        for round_number in range(repeats):
            for offset in range(len(models)):
                index = (round_number + offset) % len(models)
                started = time.perf_counter()
                models[index](image)
                times[index].append(time.perf_counter() - started)
    return [statistics.median(model_times) * 1000 for model_times in times]


def _read_json(path: Path) -> dict:
    """A run's config or summary file; empty when absent or unreadable (a FIFO, too large, not JSON).

    Both only add columns (init, training time), so a damaged one costs a column, not the comparison.
    """
    try:
        values = parse_json(read_text_file(path, "run file"), path)
    except PetsegError:
        return {}
    return values if isinstance(values, dict) else {}


def _init(run_config: dict) -> str:
    if run_config.get("weights"):
        return "weights file"
    if "pretrained" not in run_config:
        return "unknown"
    return "ImageNet" if run_config["pretrained"] else "random"


def _best_row(run_dir: Path) -> tuple[dict[str, float], int]:
    """The best epoch's validation figures (as floats) and the number of epochs.

    A row without all three finite figures (an epoch that never finished, a damaged number)
    is no candidate: it could not be shown, nor ranked against the others.
    """
    history = read_history(run_dir)
    names = [f"val_{name}" for name in ("miou", "pixel_accuracy", "fg_iou")]
    rows = [{name: finite_float(row.get(name)) for name in names} for row in history]
    rows = [row for row in rows if None not in row.values()]
    if not rows:
        raise PetsegError(f"{run_dir}: no finished epoch in {HISTORY_JSON_FILE}")
    return max(rows, key=lambda row: row["val_miou"]), len(history)


def _train_seconds(run_dir: Path) -> float:
    """The run's training time: its summary's, else its history's epochs (runs older than their summary
    file, or a damaged one); NaN, shown as such, when neither holds a finite total."""
    seconds = finite_float(_read_json(run_dir / SUMMARY_FILE).get("train_seconds"))
    if seconds is not None and seconds > 0:
        return seconds
    total = sum(finite_float(row.get("seconds")) or 0.0 for row in read_history(run_dir))
    return total if math.isfinite(total) else float("nan")  # finite rows can still add up to infinity


def summarize_run(run_dir: str | Path, *, image_size: int = 224):
    """A run folder's summary (latency not yet measured) and its best model."""
    from petseg.models import load_model
    from petseg.models.summary import count_parameters, measure_gflops

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PetsegError(f"{run_dir}: not a run directory")
    best, epochs = _best_row(run_dir)
    model = load_model(best_model_file(run_dir))
    return RunSummary(
        name=run_dir.name, run_dir=str(run_dir), model=model.config.architecture,
        init=_init(_read_json(run_dir / CONFIG_FILE)), parameters_m=count_parameters(model)[0] / 1e6,
        gflops=measure_gflops(model, image_size), latency_ms=float("nan"), epochs=epochs,
        train_minutes=_train_seconds(run_dir) / 60, pixel_accuracy=best["val_pixel_accuracy"], miou=best["val_miou"],
        fg_iou=best["val_fg_iou"],
    ), model


def _unique_names(summaries: list[RunSummary]) -> None:
    """Two runs both called 'run' are told apart by their full paths."""
    names = [summary.name for summary in summaries]
    for summary in summaries:
        if names.count(summary.name) > 1:
            summary.name = summary.run_dir


def table_rows(summaries: list[RunSummary]) -> list[list[str]]:
    return [[template.format(getattr(summary, field)) for _, field, template in COLUMNS] for summary in summaries]


def to_markdown(summaries: list[RunSummary]) -> str:
    header = [title for title, _, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summaries)]
    return "\n".join(lines) + "\n"


def to_csv(summaries: list[RunSummary]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(summaries[0])), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(summary) for summary in summaries)
    return buffer.getvalue()


class Comparison(list):
    """The summaries of the runs that could be compared, in the order given (a list, as before),
    and `failures`: (run, message) for each run that could not be, the message naming its file."""

    def __init__(self, summaries=(), failures=()) -> None:
        super().__init__(summaries)
        self.failures: list[tuple[str, str]] = list(failures)


def compare_runs(run_dirs: list[str | Path], out_dir: str | Path | None = None, *, force: bool = False,
                 image_size: int = 224, repeats: int = 10, threads: int | None = 1) -> Comparison:
    """Summaries of the runs; with out_dir, also comparison.md/.csv/.png there.

    A run that cannot be read (a damaged history or model file, not a run folder) is left out
    and listed in the result's `failures`; the others are compared and written. When no run
    can be compared, PetsegError: one line, naming each run and what is wrong with it.
    """
    if not run_dirs:
        raise PetsegError("compare: give at least one run directory")
    check_threads(threads)
    check_whole_number(repeats, "repeats", 1)
    check_whole_number(image_size, "image_size", 16, IMAGE_SIZE_RANGE[1])
    if out_dir is not None:
        _check_out_dir(Path(out_dir), force)
    summaries, models, failures = [], [], []
    for run_dir in run_dirs:
        try:
            summary, model = summarize_run(run_dir, image_size=image_size)
        except PetsegError as error:
            failures.append((str(run_dir), error))
            continue
        except OSError as error:  # what the system refused on one run's files (permissions, a vanished folder)
            where = error.filename if error.filename is not None else run_dir
            failures.append((str(run_dir), PetsegError(f"{clipped(str(where))}: {error.strerror or error}")))
            continue
        summaries.append(summary)
        models.append(model)
    if not summaries:
        raise _nothing_to_compare(failures)
    for summary, latency in zip(summaries, measure_latencies(models, image_size, repeats, threads=threads)):
        summary.latency_ms = latency
    _unique_names(summaries)
    if out_dir is not None:
        _write_outputs(summaries, Path(out_dir))
    return Comparison(summaries, [(run, str(error)) for run, error in failures])


class NothingToCompare(PetsegError):
    """No run could be compared: the first run's error, and every run's in `failures`
    (the CLI prints one line each)."""

    def __init__(self, failures: list[tuple[str, PetsegError]]) -> None:
        first = failures[0][1]
        super().__init__(first.message, advice=first.advice, option=first.option)
        self.failures = [(run, str(error)) for run, error in failures]


def _nothing_to_compare(failures: list[tuple[str, PetsegError]]) -> PetsegError:
    """One run's own error as it is; several runs' as NothingToCompare."""
    return failures[0][1] if len(failures) == 1 else NothingToCompare(failures)


def _check_out_dir(out_dir: Path, force: bool) -> None:
    """Before the models are measured: an earlier comparison is kept unless `force`, and the folder must take files."""
    for name in OUTPUT_NAMES:
        refuse_to_overwrite(out_dir / name, force)
    prepare_output_folder(out_dir)


def _write_outputs(summaries: list[RunSummary], out_dir: Path) -> None:
    from petseg.plots import write_comparison_chart

    markdown, table, chart_file = (out_dir / name for name in OUTPUT_NAMES)
    chart = {title: [getattr(summary, field) for summary in summaries] for title, field in CHART_METRICS.items()}
    try:
        write_text_atomic(markdown, to_markdown(summaries))
        write_text_atomic(table, to_csv(summaries))
        write_comparison_chart([summary.name for summary in summaries], chart, chart_file)
    except OSError as error:  # the disk filled up, or the folder went away while the models were measured
        raise PetsegError(f"{out_dir}: cannot write the comparison ({error.strerror or error})") from None
