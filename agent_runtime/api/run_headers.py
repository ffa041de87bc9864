"""Request headers an app lets into its runs' ``config["configurable"]``.

An app's ``http.configurable_headers`` (``AGENT_CONFIGURABLE_HEADERS_INCLUDES`` and
``..._EXCLUDES``) names them, as on LangGraph Platform: exact names or ``*`` wildcards
(nothing else, so no pattern can be slow), exclusions win, and with no includes no header
is passed. Credentials never are, whatever the patterns say.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from agent_runtime.config.http_settings import HttpSettings

NEVER_PASSED = frozenset(
    {"authorization", "cookie", "x-api-key", "x-admin-key", "x-service-key", "x-tenant-id"}
)


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    parts = ("".join(".*" if c == "*" else re.escape(c) for c in p.lower()) for p in patterns)
    return re.compile(rf"(?:{'|'.join(parts)})\Z", re.DOTALL)


def configurable_headers(headers: Mapping[str, str], settings: HttpSettings) -> dict[str, str]:
    """The headers (lower-case names) ``settings`` lets into a run's configurable."""
    includes = _compiled(tuple(settings.configurable_headers_includes))
    if includes is None:
        return {}
    excludes = _compiled(tuple(settings.configurable_headers_excludes))
    passed = {}
    for name, value in headers.items():
        key = name.lower()
        if key in NEVER_PASSED or not includes.match(key):
            continue
        if excludes is not None and excludes.match(key):
            continue
        passed[key] = value
    return passed
