"""Export the bundled model (src/petseg/weights/petseg-pets.safetensors) to ONNX beside it.

    python scripts/export_bundled_onnx.py [--int8 --calibration DIR] [--float16-weights] [--out FILE]

The .onnx file is what `petseg cutout`, `serve`, `evaluate` and `Segmenter.load()` run
by default, on ONNX Runtime without PyTorch. The float export is checked against
PyTorch before it is written (as `petseg export` does); --int8 quantizes its decoder,
calibrated on the photos of DIR. What ships is
`--int8 --calibration ../shared/data/oxford-pets-sample/images --float16-weights` (README,
"int8"): an int8 decoder and a float encoder whose weights are stored in float16. Run it
again whenever the .safetensors file changes (`make bundled-model` does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from petseg.errors import PetsegError
from petseg.inference.export import export_and_verify
from petseg.models import load_model
from petseg.models.files import bundled_model_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", action="store_true", help="Quantize to int8 (needs --calibration).")
    parser.add_argument("--calibration", type=Path, help="Folder of photos to calibrate int8 on.")
    parser.add_argument("--int8-scope", default="decoder", choices=("decoder", "all"), help="What int8 covers.")
    parser.add_argument("--float16-weights", action="store_true", help="Store the float weights in float16.")
    parser.add_argument("--out", type=Path, help="Where to write (default: the bundled .onnx file).")
    args = parser.parse_args(argv)
    if args.int8 != (args.calibration is not None):
        parser.error("--int8 and --calibration go together")

    source = bundled_model_path(".safetensors")
    target = args.out or source.with_suffix(".onnx")
    try:
        report = export_and_verify(load_model(source), target, force=True, calibration=args.calibration,
                                   int8_scope=args.int8_scope, float16_weights=args.float16_weights)
    except PetsegError as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps({"onnx": str(target), "megabytes": round(target.stat().st_size / 1e6, 2),
                      "int8": args.int8 and args.int8_scope, "max_probability_difference_to_torch": report.parity_difference,
                      "int8_max_probability_change": report.int8_change,
                      "float16_weights_max_probability_change": report.float16_change}))


if __name__ == "__main__":
    main()
