"""Build a model from a file only as far as the file's own weights could fill it.

A model file names its architecture, and petseg builds that before it loads a weight:
a 200-byte file naming `unet_convnext_xxlarge` made petseg allocate an 846-million-
parameter network (over 3 GB) only to find that the file holds one number. The weights
the file holds bound what building its model may allocate, so building is watched,
allocation by allocation, and stops once it passes them.
"""

from __future__ import annotations

from petseg.errors import PetsegError

# Room for what building allocates besides the weights (small temporaries of weight
# initialisation), and for files stored in float16 whose models build in float32.
SLACK_BYTES = 64 * 2**20
STORED_TO_BUILT = 2


class BuildTooBig(PetsegError):
    """A model that would allocate more than its file could fill."""


def new_storage_bytes(inputs, outputs) -> int:
    """Bytes of the output tensors' storages that no input shares (views and in-place results are free)."""
    import torch
    from torch.utils._pytree import tree_leaves

    seen = {leaf.untyped_storage().data_ptr() for leaf in tree_leaves(inputs) if isinstance(leaf, torch.Tensor)}
    total = 0
    for leaf in tree_leaves(outputs):
        if isinstance(leaf, torch.Tensor) and leaf.untyped_storage().data_ptr() not in seen:
            seen.add(leaf.untyped_storage().data_ptr())
            total += leaf.untyped_storage().nbytes()
    return total


def build_within(stored_bytes: int, build, describe: str):
    """build() with every allocation counted; BuildTooBig once they pass what `stored_bytes` of weights explain.

    An allocation is refused right after it is made, before anything writes to it: the
    memory of an untouched allocation is only reserved, not used.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    limit = STORED_TO_BUILT * stored_bytes + SLACK_BYTES

    class Budget(TorchDispatchMode):
        used = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            Budget.used += new_storage_bytes((args, kwargs), result)
            if Budget.used > limit:
                raise BuildTooBig(f"{describe} builds a model of over {limit / 2**20:.0f} MB, "
                                  f"more than the file's {stored_bytes:,} bytes of weights can fill")
            return result

    with Budget():
        return build()
