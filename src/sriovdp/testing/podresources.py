"""An in-memory :class:`~sriovdp.kubelet.podresources.PodResources` for unit tests."""

from __future__ import annotations

from collections.abc import Iterable

from sriovdp.kubelet.podresources import PodResourcesError


class FakePodResources:
    """What pods hold, set by the test; :meth:`fail` makes every call fail until healed."""

    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}
        self.failure: str | None = None
        self.calls = 0

    def hold(self, resource: str, ids: Iterable[str]) -> None:
        self._held.setdefault(resource, set()).update(ids)

    def release(self, resource: str, ids: Iterable[str]) -> None:
        self._held.get(resource, set()).difference_update(ids)

    def fail(self, code: str | None) -> None:
        """Every call raises ``PodResourcesError(code)`` until ``fail(None)``."""
        self.failure = code

    async def held(self) -> dict[str, frozenset[str]]:
        self.calls += 1
        if self.failure is not None:
            raise PodResourcesError(self.failure, "on purpose")
        return {name: frozenset(ids) for name, ids in self._held.items() if ids}
