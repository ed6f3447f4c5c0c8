"""Resumable checkpoints, written atomically (petseg.atomic): a `kill -9` at any
moment leaves either the old checkpoint or the new one, never half of one.

Checkpoints hold only tensors and plain Python values, so they load with
`torch.load(weights_only=True)`: nothing from a user's file is ever unpickled.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from petseg.atomic import atomic_path
from petseg.errors import PetsegError
from petseg.run_dir import BROKEN_CHECKPOINT_ADVICE
from petseg.train.pause import pause_point

CHECKPOINT_FORMAT = 1


def capture_rng_states() -> dict[str, Any]:
    """torch, CUDA, numpy and Python RNG states as tensors and plain values."""
    import torch

    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def check_rng_states(states: dict[str, Any]) -> None:
    """ValueError unless the saved states' tensors have the dtypes and shapes of those this
    machine captures, checked before any is converted: a crafted checkpoint's numpy keys, one
    int64 stretched (stride 0) to 600 million, took restoring to 3.3 GB and then resumed."""
    expected = capture_rng_states()
    pairs = [("torch state", states["torch"], expected["torch"]),
             ("numpy keys", states["numpy"]["keys"], expected["numpy"]["keys"])]
    if "cuda" in states and "cuda" in expected:  # restored only then; one GPU's state is the size of any other's
        if not isinstance(states["cuda"], list):
            raise ValueError(f"CUDA states: {_shape_and_dtype(states['cuda'])}, not a list")
        pairs += [(f"CUDA state {index}", state, expected["cuda"][0]) for index, state in enumerate(states["cuda"])]
    for name, saved, reference in pairs:
        if _shape_and_dtype(saved) != _shape_and_dtype(reference):
            raise ValueError(f"{name}: {_shape_and_dtype(saved)}, not {_shape_and_dtype(reference)}")


def _shape_and_dtype(value: Any) -> str:
    import torch

    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}"
    return f"{'x'.join(map(str, value.shape)) or 'scalar'} {str(value.dtype).removeprefix('torch.')}"


def restore_rng_states(states: dict[str, Any]) -> None:
    import torch

    check_rng_states(states)
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically, adding the RNG states and a format tag."""
    import torch

    state = {**state, "format": CHECKPOINT_FORMAT, "rng": capture_rng_states()}
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
        pause_point("checkpoint-write")


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint (weights_only: no arbitrary unpickling)."""
    import warnings

    import torch

    from petseg.models.file_limits import inflation_problem
    from petseg.models.pretrained import refused_objects

    path = Path(path)
    if not path.is_file():
        raise PetsegError(f"{path}: no checkpoint to resume from")
    try:
        if path.stat().st_size == 0:
            raise PetsegError(f"{path}: empty (0 bytes), not a checkpoint", advice=BROKEN_CHECKPOINT_ADVICE)
        problem = inflation_problem(path)  # before torch.load allocates what the records inflate to
        if problem:
            raise PetsegError(f"{path}: {problem}", advice=BROKEN_CHECKPOINT_ADVICE)
        with warnings.catch_warnings():  # its warnings about a foreign pickle's protocol: the error says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except PetsegError:
        raise
    except OSError as error:
        raise PetsegError(f"{path}: cannot read it ({error.strerror or error})") from None
    except Exception as error:  # torch raises several kinds for damaged or foreign files
        if refused_objects(error):
            raise PetsegError(f"{path}: not a petseg checkpoint (it holds objects other than tensors and plain "
                              "values, which petseg does not load)", advice=BROKEN_CHECKPOINT_ADVICE) from None
        raise PetsegError(f"{path}: not a readable checkpoint (truncated, damaged or not a torch file)",
                          advice=BROKEN_CHECKPOINT_ADVICE) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise PetsegError(f"{path}: not a petseg checkpoint (format {CHECKPOINT_FORMAT} expected)",
                          advice=BROKEN_CHECKPOINT_ADVICE)
    return state


def load_final_weights(model, checkpoint_path: str | Path) -> None:
    """Replace `model`'s weights with those of a run's last checkpoint (same architecture):
    their moving average when the run kept one (what it validated and saved as best)."""
    checkpoint = load_checkpoint(checkpoint_path)
    state = checkpoint["ema"] if "ema" in checkpoint else checkpoint["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise PetsegError(f"{checkpoint_path}: weights do not fit the run's model ({str(error).splitlines()[0]})") from None
