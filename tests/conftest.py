"""Suite-wide fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_dataset_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Decoded datasets are cached under $FASTATTR_CACHE; keep the suite out of the user's ~/.cache.
    monkeypatch.setenv("FASTATTR_CACHE", str(tmp_path_factory.getbasetemp() / "fastattr-cache"))
