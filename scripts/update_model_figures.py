"""Rewrite src/petseg/models/figures.json: the `petseg models` figures, counted with PyTorch.

    python scripts/update_model_figures.py

Run it after registering a model or changing the bundled one (a test says when it is stale).
"""

from __future__ import annotations

import json

from petseg.atomic import write_text_atomic
from petseg.models.figures import FIGURES_FILE, count_figures
from petseg.models.files import bundled_model_path, read_config


def main() -> None:
    figures = count_figures(read_config(bundled_model_path()))
    write_text_atomic(FIGURES_FILE, json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIGURES_FILE} ({len(figures['registry'])} models and the bundled one)")


if __name__ == "__main__":
    main()
