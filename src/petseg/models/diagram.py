"""A picture of a U-Net, as the reference notebook's `plot_model` gave one.

Encoder stages down the left with their output shapes, decoder blocks up the right,
skip connections across, the head and the output at the top right. The shapes come
from one forward pass at the chosen size, so the picture is of the real network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from petseg.errors import PetsegError

FORMATS = (".png", ".svg")


@dataclass
class Box:
    title: str
    shape: tuple[int, ...]  # (C, H, W)
    column: int  # 0 encoder, 1 decoder
    row: float  # 0 at the top


def _shape(tensor) -> tuple[int, ...]:
    return tuple(int(size) for size in tensor.shape[1:])


def trace_unet(model, image_size: int) -> tuple[list[Box], list[tuple[int, int]]]:
    """The boxes to draw and the skip connections (encoder box index, decoder box index)."""
    import torch

    outputs = []
    hooks = [block.register_forward_hook(lambda module, args, output: outputs.append(_shape(output)))
             for block in model.decoder.blocks]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            images = torch.zeros(1, 3, image_size, image_size)
            features = [_shape(feature) for feature in model.encoder(images)]
            outputs.clear()
            logits = model(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    encoder = [Box("input", (3, image_size, image_size), 0, 0)]
    encoder += [Box(f"encoder stage {index + 1}", shape, 0, index + 1) for index, shape in enumerate(features)]
    skips = len(features) - 1
    decoder = []
    for index, shape in enumerate(outputs):
        # Block i joins the i-th deepest skip; a block past the skips works at full resolution.
        row = skips - index if index < skips else 0
        decoder.append(Box(f"decoder block {index + 1}", shape, 1, row))
    head_row = min(box.row for box in decoder) - 1 if decoder else 0
    decoder.append(Box(f"head ({type(model.head).__name__})", _shape(logits), 1, head_row))
    connections = [(skips - index, len(encoder) + index) for index in range(min(skips, len(outputs)))]
    return encoder + decoder, connections


def draw_unet(model, path: str | Path, image_size: int) -> Path:
    """Draw `model` into `path` (.png or .svg), atomically."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise PetsegError(f"{path}: the diagram is written as .png or .svg, not {path.suffix or 'no extension'}")
    boxes, skips = trace_unet(model, image_size)
    figure = _figure(boxes, skips, f"{model.config.architecture} at {image_size}x{image_size}")
    import matplotlib
    import matplotlib.pyplot as plt

    from petseg.atomic import atomic_path

    try:  # SVG text stays text: searchable and selectable
        with atomic_path(path) as temporary, matplotlib.rc_context({"svg.fonttype": "none"}):
            figure.savefig(temporary, format=path.suffix.lower()[1:], dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def _figure(boxes: list[Box], skips: list[tuple[int, int]], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    top, bottom = min(box.row for box in boxes), max(box.row for box in boxes)
    figure, axes = plt.subplots(figsize=(8, 1.1 * (bottom - top + 2)))
    axes.set_xlim(-0.8, 3.8)
    axes.set_ylim(bottom + 0.8, top - 0.8)
    axes.axis("off")
    axes.set_title(title)
    colours = ("#cfe2f3", "#d9ead3")
    centres = []
    for box in boxes:
        x, y = box.column * 3, box.row
        axes.add_patch(FancyBboxPatch((x - 0.7, y - 0.3), 1.4, 0.6, boxstyle="round,pad=0.02",
                                      facecolor=colours[box.column], edgecolor="#444444"))
        axes.text(x, y, f"{box.title}\n{' x '.join(map(str, box.shape))}", ha="center", va="center", fontsize=8)
        centres.append((x, y))
    arrow = dict(arrowstyle="->", color="#444444")
    path_order = [index for index, box in enumerate(boxes) if box.column == 0]
    path_order += [index for index, box in enumerate(boxes) if box.column == 1]
    for start, end in zip(path_order, path_order[1:]):
        (x0, y0), (x1, y1) = centres[start], centres[end]
        if boxes[start].column == boxes[end].column:
            axes.annotate("", (x1, y1 + (0.3 if y1 < y0 else -0.3)), (x0, y0 + (-0.3 if y1 < y0 else 0.3)),
                          arrowprops=arrow)
        else:  # the bottleneck into the first decoder block
            axes.annotate("", (x1 - 0.7, y1), (x0 + 0.7, y0), arrowprops=arrow)
    for encoder_index, decoder_index in skips:
        (x0, y0), (x1, y1) = centres[encoder_index], centres[decoder_index]
        axes.annotate("", (x1 - 0.7, y1), (x0 + 0.7, y0),
                      arrowprops=dict(arrowstyle="->", color="#cc6600", linestyle="--"))
        axes.text((x0 + x1) / 2, (y0 + y1) / 2 - 0.08, "skip", ha="center", fontsize=7, color="#cc6600")
    return figure
