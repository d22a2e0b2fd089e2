"""Reading a ResourceClaim's allocation from the apiserver: the port and its adapter.

:class:`ClaimReader` is what :class:`~sriovdp.kubelet.dra.preparer.ClaimPreparer` needs;
:class:`KubernetesClaimReader` implements it with the official ``kubernetes`` client
(``ResourceV1Api.read_namespaced_resource_claim``, run in a worker thread so the event loop
never waits on the network), and :func:`claim_from_api` translates its answer. The test kit
has an in-memory reader (:class:`sriovdp.testing.dra.FakeClaimReader`).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from sriovdp.errors import SriovdpError
from sriovdp.kubelet.dra.httperrors import failure_text
from sriovdp.model.dra.prepare import AllocatedDevice, ClaimAllocation, ClaimRef
from sriovdp.threads import in_daemon_thread


class ClaimReadError(SriovdpError):
    """The claim cannot be used: not found, another UID, not allocated, API unreachable."""


class ClaimReader(Protocol):
    """Reads one claim's allocation."""

    async def read(self, ref: ClaimRef) -> ClaimAllocation:
        """The claim named by ``ref``, with its allocation results (all drivers).

        Raises:
            ClaimReadError: it does not exist, has another UID, is not allocated, or the
                apiserver could not be asked; the message says which.
        """
        ...


def claim_from_api(ref: ClaimRef, claim: Any) -> ClaimAllocation:
    """Translate a ``kubernetes.client.ResourceV1ResourceClaim`` for ``ref``.

    Raises:
        ClaimReadError: its UID is not ``ref.uid`` (deleted and created again under the same
            name) or it has no allocation.
    """
    uid = getattr(claim.metadata, "uid", None)
    if uid != ref.uid:
        raise ClaimReadError(f"claim {ref.namespace}/{ref.name} has UID {uid}, not {ref.uid} "
                             "(it was deleted and created again)")
    allocation = claim.status.allocation if claim.status is not None else None
    if allocation is None or allocation.devices is None:
        raise ClaimReadError(f"claim {ref} is not allocated")
    results = allocation.devices.results or []
    return ClaimAllocation(ref, tuple(
        AllocatedDevice(request=r.request, driver=r.driver, pool=r.pool, device=r.device)
        for r in results
    ))


class KubernetesClaimReader:
    """:class:`ClaimReader` on ``kubernetes.client.ResourceV1Api`` (``resource.k8s.io/v1``).

    Example::

        from kubernetes import client, config
        config.load_incluster_config()
        reader = KubernetesClaimReader(client.ResourceV1Api())
    """

    def __init__(self, api: Any, *, timeout: float = 10.0) -> None:
        self._api = api
        self._timeout = timeout

    async def read(self, ref: ClaimRef) -> ClaimAllocation:
        from kubernetes.client.exceptions import ApiException  # the client is optional
        from urllib3.exceptions import HTTPError

        try:
            claim = await in_daemon_thread(functools.partial(
                self._api.read_namespaced_resource_claim, ref.name, ref.namespace,
                _request_timeout=self._timeout))
        except ApiException as exc:
            if exc.status == 404:
                raise ClaimReadError(f"claim {ref.namespace}/{ref.name} not found") from exc
            raise ClaimReadError(f"reading claim {ref}: {exc.status} {exc.reason}") from exc
        except (OSError, ValueError, HTTPError) as exc:  # urllib3: MaxRetryError and others
            raise ClaimReadError(f"reading claim {ref}: {failure_text(exc)}") from exc
        return claim_from_api(ref, claim)
