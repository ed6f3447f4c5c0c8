"""Fixtures shared by the whole suite: the real sample, a toy dataset, a private cache."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-pets-sample"


@pytest.fixture(scope="session")
def shared_sample() -> Path:
    """The 450-photo Oxford-IIIT Pet sample (read-only), or a skip where it is absent."""
    if not (SHARED_SAMPLE / "images").is_dir():
        pytest.skip(f"the shared Oxford-IIIT Pet sample is not at {SHARED_SAMPLE}")
    return SHARED_SAMPLE


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """A small generated dataset in the official layout (24 pets, 96 px, seed 0). Do not modify it."""
    from petseg.data.toy import make_toy_dataset

    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "pets", n=24, size=96, seed=0)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Keep the tests' dataset caches out of the user's ~/.cache/petseg."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PETSEG_CACHE_DIR", str(tmp_path_factory.mktemp("petseg-cache")))
    yield
    patch.undo()
