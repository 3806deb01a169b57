import os

import pytest


@pytest.fixture(autouse=True)
def _no_listings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see only the settings they set themselves."""
    for name in list(os.environ):
        if name.startswith("LISTINGS_"):
            monkeypatch.delenv(name)
