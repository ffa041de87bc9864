"""A filter on resources' metadata, as an app's auth handler returns one (``langgraph_sdk``'s
``FilterType``, with LangGraph Platform's meaning):

- ``{"owner": "ada"}`` or ``{"owner": {"$eq": "ada"}}``: the key holds exactly that value;
- ``{"users": {"$contains": "ada"}}``: the key holds a list with that element (with a list
  of elements, ``{"$contains": ["ada", "bob"]}``, with each of them);
- several keys: all of them (AND).

Values are JSON scalars (strings, numbers, booleans, null), compared by JSON type (``true``
is not ``1``; ``1`` is ``1.0``): Postgres' ``jsonb`` containment gives exactly that on
scalars, so a filter reads the same in SQL (:meth:`MetadataFilter.document`) and in Python
(:meth:`MetadataFilter.matches`). Anything else (``$or``, nested operators, objects or lists
as values) is a :class:`ValueError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Scalar = str | int | float | bool | None
_OPERATORS = ("$eq", "$contains")


@dataclass(frozen=True)
class MetadataFilter:
    """Keys that must hold a value (``equals``) or lists holding elements (``contains``)."""

    equals: Mapping[str, Scalar] = field(default_factory=dict)
    contains: Mapping[str, tuple[Scalar, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: object) -> MetadataFilter | None:
        """The filter ``raw`` (a handler's answer) says; ``None`` for an empty one, which
        filters nothing (as on the Platform)."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"a filter is a dict, not a {type(raw).__name__}")
        equals: dict[str, Scalar] = {}
        contains: dict[str, tuple[Scalar, ...]] = {}
        for key, condition in raw.items():
            if not isinstance(key, str) or key.startswith("$"):
                raise ValueError(f"filter key {key!r} is not supported (only metadata keys)")
            if not isinstance(condition, Mapping):
                equals[key] = _scalar(key, condition)
                continue
            if len(condition) != 1 or next(iter(condition)) not in _OPERATORS:
                raise ValueError(
                    f"filter on {key!r}: one operator of {', '.join(_OPERATORS)} expected, "
                    f"got {sorted(map(str, condition))}"
                )
            operator, operand = next(iter(condition.items()))
            if operator == "$eq":
                equals[key] = _scalar(key, operand)
            else:
                elements = operand if isinstance(operand, list | tuple) else [operand]
                contains[key] = tuple(_scalar(key, element) for element in elements)
        if not equals and not contains:
            return None
        return cls(equals, contains)

    def document(self) -> dict[str, Scalar | list[Scalar]]:
        """The filter as a JSON containment document (what Postgres' ``@>`` takes)."""
        return {**self.equals, **{key: list(wanted) for key, wanted in self.contains.items()}}

    def matches(self, metadata: Mapping[str, object] | None) -> bool:
        """Whether ``metadata`` passes the filter."""
        metadata = metadata or {}
        for key, wanted in self.equals.items():
            if key not in metadata or not same(metadata[key], wanted):
                return False
        for key, elements in self.contains.items():
            held = metadata.get(key)
            if not isinstance(held, list):
                return False
            if not all(any(same(item, element) for item in held) for element in elements):
                return False
        return True


def same(value: object, wanted: Scalar) -> bool:
    """JSON equality of a stored value and a scalar: booleans are not numbers."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted
    if isinstance(value, int | float) and isinstance(wanted, int | float):
        return value == wanted
    return type(value) is type(wanted) and value == wanted


def _scalar(key: str, value: object) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(
        f"filter on {key!r}: values are strings, numbers, booleans or null, "
        f"not a {type(value).__name__}"
    )
