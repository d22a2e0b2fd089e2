"""DRA adapters for the kubelet and the apiserver.

* :mod:`.claims` — reading a ResourceClaim's allocation (the ``ClaimReader`` port and its
  implementation on the official ``kubernetes`` client).
* :mod:`.preparer` — NodePrepareResources/NodeUnprepareResources for one claim: read, plan
  (:mod:`sriovdp.model.dra.prepare`), write the CDI spec, record the checkpoint.
* :mod:`.servicer` — the gRPC services on ``dra.sock`` (``DRAPlugin`` v1 and v1beta1,
  ``DRAResourceHealth`` v1 and v1alpha1) and the plugin watcher's ``Registration``.
* :mod:`.publisher` — keeping the apiserver's ResourceSlices of this node equal to its
  devices (the ``SliceApi`` port and its implementation on the official client).
* :mod:`.server` — the two sockets (``dra.sock`` and ``<driver>-reg.sock``) and their lifetime.
"""
