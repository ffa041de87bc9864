"""Each test loads its app into a clean slate: loading an app changes ``sys.path``,
``sys.modules`` and ``os.environ`` for the whole process (one process serves one app), so
every test gets them back as they were."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_process_state() -> Iterator[None]:
    path = list(sys.path)
    modules = dict(sys.modules)
    environ = dict(os.environ)
    yield
    sys.path[:] = path
    for name in [name for name in sys.modules if name not in modules]:
        del sys.modules[name]
    sys.modules.update(modules)
    os.environ.clear()
    os.environ.update(environ)
