"""Breeds of a dataset, and choosing samples by breed.

The official Oxford-IIIT Pet lists name each photo `<breed>_<number>` (cat breeds
capitalised, `Abyssinian_34`; dog breeds lower case, `american_bulldog_12`), so a
sample's breed is its name without the trailing number. Users' own folders follow
whatever naming they like: a name without that suffix has no breed.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from petseg.data.layouts import Sample
from petseg.errors import PetsegError, clipped, quoted

# The official 37 breeds' names fit; a folder of thousands is cut short in messages.
MAX_LISTED_CHARACTERS = 1000

_NUMBERED = re.compile(r"(.+)_\d+")


def breed_of(name: str) -> str | None:
    """`american_bulldog_12` -> `american_bulldog`; None when the name has no `_<number>` suffix."""
    match = _NUMBERED.fullmatch(name)
    return match.group(1) if match else None


def breeds_in(samples: Iterable[Sample]) -> list[str]:
    """The distinct breeds of `samples`, sorted case-insensitively (as the official list orders them)."""
    return sorted({breed for breed in (breed_of(s.name) for s in samples) if breed}, key=str.lower)


def resolve_breeds(names: Sequence[str], known: Sequence[str], what: str = "breed") -> list[str]:
    """Breed names as given (any case) -> the dataset's own spelling; an unknown one is an error."""
    by_lower = {breed.lower(): breed for breed in known}
    resolved = []
    for name in names:
        breed = by_lower.get(name.strip().lower())
        if breed is None:
            valid = clipped(", ".join(known), MAX_LISTED_CHARACTERS) if known else \
                "none (no photo is named <breed>_<number>)"
            raise PetsegError(f"unknown {what} {quoted(name)}; breeds in this dataset: {valid}")
        resolved.append(breed)
    return resolved


def select_breeds(
    samples: Sequence[Sample],
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    *,
    known: Sequence[str] | None = None,
) -> list[Sample]:
    """The samples of the `include` breeds (all when None) that are not of an `exclude` breed.

    Names are matched case-insensitively against `known` (default: the breeds of `samples`);
    a name that is not a breed there raises, listing the valid ones.
    """
    known = breeds_in(samples) if known is None else list(known)
    wanted = set(resolve_breeds(include, known)) if include else None
    unwanted = set(resolve_breeds(exclude, known)) if exclude else set()
    if wanted is not None and wanted <= unwanted:
        raise PetsegError(f"every chosen breed ({', '.join(sorted(wanted))}) is also excluded: no photo is left")
    chosen = []
    for sample in samples:
        breed = breed_of(sample.name)
        if (wanted is None or breed in wanted) and breed not in unwanted:
            chosen.append(sample)
    return chosen
