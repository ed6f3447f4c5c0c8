"""Put a run's best model into the package as the bundled model, in float16.

    python scripts/bundle_model.py runs/bundled [--last] [--force]

--last takes the run's final weights (its checkpoint) instead of its best validation epoch:
the right choice for a final model trained on every image (`--train-split all`), whose
"validation" images were also trained on and so cannot pick an epoch.

Beside it goes the list of the photos it trained on (petseg-pets.training.txt, from the
run's saved config: its data, split, breeds and the clean-data rule), which `petseg
evaluate` uses to warn that a score on them is a fit check.

Refuses to replace an existing bundled model unless --force is given. Prints how far
float16 moves the probabilities on random inputs at the model's size, so a maintainer
sees the cost of halving the file before committing it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from petseg.atomic import write_text_atomic
from petseg.errors import PetsegError
from petseg.evaluate import BUNDLED_TRAINING_LIST
from petseg.models import load_model, save_model
from petseg.models.files import BUNDLED_MODEL_NAME, WEIGHTS_FOLDER, resolve_model_path
from petseg.run_dir import CHECKPOINT_FILE, CONFIG_FILE
from petseg.train.checkpoint import load_final_weights


def training_photos(config_path: Path) -> tuple[list[str], str]:
    """(the stems of the run's training photos, the list file's text: a header, then one stem a line)."""
    from petseg.train import TrainConfig
    from petseg.train.data import load_splits

    if not config_path.is_file():
        raise PetsegError(f"{config_path}: missing; the bundled model needs the run that trained it")
    config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    names = sorted({sample.name for sample in load_splits(config).train})
    header = (f"# The photos the bundled model {BUNDLED_MODEL_NAME} trained on ({config.data}, split "
              f"{config.train_split}, unfit samples left out).\n"
              "# petseg evaluate warns when scored on any of them: such a figure is a fit check, not a score.\n")
    return names, header + "".join(f"{name}\n" for name in names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="A run directory written by `petseg train` (or its .safetensors).")
    parser.add_argument("--last", action="store_true", help="Bundle the final epoch's weights (the run's checkpoint).")
    parser.add_argument("--force", action="store_true", help="Replace an existing bundled model.")
    args = parser.parse_args(argv)

    target = WEIGHTS_FOLDER / BUNDLED_MODEL_NAME
    if target.exists() and not args.force:
        raise SystemExit(f"error: {target} already exists (use --force to replace the bundled model)")
    try:
        path = resolve_model_path(args.run_dir)
        if path.suffix.lower() != ".safetensors":
            raise PetsegError(f"{path}: the bundled model must come from a .safetensors file")
        model = load_model(path)
        trained_on, training_list = training_photos(path.parent / CONFIG_FILE)
        if args.last:
            load_final_weights(model, path.parent / CHECKPOINT_FILE)
    except PetsegError as error:
        raise SystemExit(f"error: {error}") from None
    target = save_model(model, target, dtype=torch.float16)
    write_text_atomic(WEIGHTS_FOLDER / BUNDLED_TRAINING_LIST, training_list)
    halved = load_model(target)
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, model.config.image_size, model.config.image_size)
    with torch.no_grad():
        difference = (model(inputs).softmax(1) - halved(inputs).softmax(1)).abs().max().item()
    print(json.dumps({"bundled": str(target), "weights": "last" if args.last else "best",
                      "megabytes": round(target.stat().st_size / 1e6, 2),
                      "architecture": model.config.architecture, "image_size": model.config.image_size,
                      "max_probability_difference_fp16": difference, "training_photos": len(trained_on)}))


if __name__ == "__main__":
    main()
