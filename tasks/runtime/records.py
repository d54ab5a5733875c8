"""Plain value records for modules on the start-up path.

A `typing.NamedTuple` under `from __future__ import annotations` compiles every field's annotation
when its class is created, and a dataclass generates its methods with `exec`: both cost from a few
tenths of a millisecond to a millisecond per class at import, measured with py-spy on
`inv l1.list`. A subclass of `Record` lists its fields in `__slots__` and writes its own
`__init__`; equality and repr come from here, so creating the class costs nothing.
"""

from __future__ import annotations


class Record:
    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable fields (dicts, lists): not hashable

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
