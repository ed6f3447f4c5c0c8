"""What a model costs: parameters, GFLOPs, and the layer table `model.summary()` printed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

FLOPS_IMAGE_SIZE = 224


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: str
    params: int


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return total, trainable


def measure_gflops(model: nn.Module, image_size: int = FLOPS_IMAGE_SIZE) -> float:
    """GFLOPs of one forward pass on a 1x3xSxS image, from torch's FLOP counter.

    The counter counts a multiply-add as 2 FLOPs and only the matmul/conv family, so
    BatchNorm, activations and resizes are left out (as most papers do).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with _eval_mode(model), torch.no_grad(), counter:
        model(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops() / 1e9


def layer_table(model: nn.Module, image_size: int = FLOPS_IMAGE_SIZE, depth: int = 2) -> list[LayerRow]:
    """One row per module down to `depth` levels (e.g. `encoder.net`, `decoder.blocks`),
    in the order the forward pass runs them, with output shape and parameter count."""
    rows: list[LayerRow] = []
    hooks = [
        module.register_forward_hook(_recorder(rows, name, module)) for name, module in _table_modules(model, depth)
    ]
    try:
        with _eval_mode(model), torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def describe(name: str, **options) -> dict:
    """The `petseg models` row of a registered name (with create_model options): encoder,
    sizes, cost, weights' origin.

    Built on torch's meta device: shapes without memory or arithmetic, so parameters and
    FLOPs are counted exactly and the listing stays fast.
    """
    from petseg.models.registry import create_model, model_spec

    spec = model_spec(name)
    with torch.device("meta"):
        model = create_model(name, **options)
        gflops = measure_gflops(model)
    total, trainable = count_parameters(model)
    return {
        "name": name,
        "encoder": spec.encoder if spec.encoder != "classic" else f"classic U-Net (width {model.encoder.channels[0]})",
        "params": total,
        "trainable_params": trainable,
        "gflops_224": round(gflops, 3),
        "pretrained_weights": spec.pretrained_weights,
    }


def _table_modules(module: nn.Module, depth: int, prefix: str = ""):
    """Modules `depth` levels down; lists and dicts of modules (no forward of their
    own) are looked through, so each decoder block gets its own row."""
    for name, child in module.named_children():
        qualified = f"{prefix}{name}"
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            yield from _table_modules(child, depth, f"{qualified}.")
        elif depth <= 1 or not any(True for _ in child.children()):
            yield qualified, child
        else:
            yield from _table_modules(child, depth - 1, f"{qualified}.")


def _recorder(rows: list[LayerRow], name: str, module: nn.Module):
    params = sum(parameter.numel() for parameter in module.parameters())

    def record(_module, _inputs, output):
        rows.append(LayerRow(name, type(module).__name__, _shape_text(output), params))

    return record


def _shape_text(output) -> str:
    if isinstance(output, torch.Tensor):
        return "x".join(str(size) for size in output.shape)
    if isinstance(output, (list, tuple)):
        return ", ".join(_shape_text(item) for item in output)
    return type(output).__name__


class _eval_mode:
    """Measure in eval mode, then give the model back in the mode it came in."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)
