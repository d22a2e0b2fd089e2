"""An in-memory :class:`~sriovdp.kubelet.dra.claims.ClaimReader`: the apiserver's claims.

Example::

    reader = FakeClaimReader()
    reader.put(ClaimAllocation(ClaimRef("default", "c1", "uid-1"),
                               (AllocatedDevice("nic", DRIVER, "worker-1", "0000-3b-02-1"),)))
    reader.delete("default", "c1")     # the claim is gone: reads now fail, as with a 404
"""

from __future__ import annotations

from sriovdp.kubelet.dra.claims import ClaimReadError
from sriovdp.model.dra.prepare import ClaimAllocation, ClaimRef


class FakeClaimReader:
    """Claims by namespace/name, read with the same checks as the real reader.

    Attributes:
        reads: how many reads were asked (a repeated prepare must not ask again).
        unreachable: when set, every read fails as an unreachable apiserver would.
    """

    def __init__(self) -> None:
        self._claims: dict[tuple[str, str], ClaimAllocation] = {}
        self.reads = 0
        self.unreachable = False

    def put(self, claim: ClaimAllocation) -> None:
        """Create or replace the claim (by namespace and name)."""
        self._claims[(claim.ref.namespace, claim.ref.name)] = claim

    def delete(self, namespace: str, name: str) -> None:
        self._claims.pop((namespace, name), None)

    async def read(self, ref: ClaimRef) -> ClaimAllocation:
        self.reads += 1
        if self.unreachable:
            raise ClaimReadError(f"reading claim {ref}: connection refused")
        claim = self._claims.get((ref.namespace, ref.name))
        if claim is None:
            raise ClaimReadError(f"claim {ref.namespace}/{ref.name} not found")
        if claim.ref.uid != ref.uid:
            raise ClaimReadError(f"claim {ref.namespace}/{ref.name} has UID {claim.ref.uid}, "
                                 f"not {ref.uid} (it was deleted and created again)")
        return claim
