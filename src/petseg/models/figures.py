"""The `petseg models` figures (parameters, GFLOPs at 224), counted once and shipped.

Counting them builds every model, which needs PyTorch and timm and takes seconds; the
listing should take neither. `scripts/update_model_figures.py` rewrites figures.json from
`petseg.models.summary.describe`, and a test checks that the file is current.
"""

from __future__ import annotations

import json
from pathlib import Path

FIGURES_FILE = Path(__file__).with_name("figures.json")


def read_figures() -> dict:
    """{"registry": {name: row}, "bundled": {"architecture", "options", "row"}} or empty parts."""
    try:
        saved = json.loads(FIGURES_FILE.read_text())
    except (OSError, ValueError):
        return {"registry": {}, "bundled": None}
    return {"registry": saved.get("registry", {}), "bundled": saved.get("bundled")}


def count_figures(bundled_config=None) -> dict:
    """The figures of every registered model (and of the bundled model's config), freshly counted."""
    from petseg.models import list_models
    from petseg.models.summary import describe

    figures = {"registry": {name: describe(name) for name in list_models()}, "bundled": None}
    if bundled_config is not None:
        figures["bundled"] = {"architecture": bundled_config.architecture, "options": bundled_config.options,
                              "row": describe(bundled_config.architecture, **bundled_config.options)}
    return figures
