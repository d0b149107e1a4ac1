"""Counters: the shape of the registries' statistics (slots of ints, one dict per source)."""

from __future__ import annotations

__all__ = ["Counters"]


class Counters:
    """Named counters kept in ``__slots__``; :meth:`as_dict` snapshots them in slot order.

    Subclasses declare their slots and set them in ``__init__``; a dict-valued
    counter (counts per source) is copied in the snapshot.
    """

    __slots__ = ()

    def as_dict(self) -> dict[str, int | dict[str, int]]:
        """A plain snapshot, for logs and metrics."""
        snapshot: dict[str, int | dict[str, int]] = {}
        names: tuple[str, ...] = type(self).__slots__
        for name in names:
            value = getattr(self, name)
            snapshot[name] = dict(value) if isinstance(value, dict) else value
        return snapshot

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()!r})"
