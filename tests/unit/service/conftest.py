import logging
import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_listings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see only the settings they set themselves."""
    for name in list(os.environ):
        if name.startswith("LISTINGS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """create_app() and gunicorn's setup reconfigure logging for the whole process: undo it."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")
    saved = [
        (lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled)
        for lg in map(logging.getLogger, names)
    ]
    root_handlers, root_level = root.handlers[:], root.level
    yield
    root.handlers[:] = root_handlers
    root.setLevel(root_level)
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
