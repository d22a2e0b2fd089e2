"""DRA mode's apiserver ports on one official ``kubernetes`` client: connecting, and the Node.

:func:`connect` loads the client config (a kubeconfig file, else the in-cluster service
account, else ``$KUBECONFIG`` / ``~/.kube/config`` as the client's own loaders do) and
returns the three ports DRA mode needs: ResourceSlices
(:class:`~sriovdp.kubelet.dra.publisher.KubernetesSliceApi`), claims
(:class:`~sriovdp.kubelet.dra.claims.KubernetesClaimReader`) and the Node's UID for the
slices' owner reference (:class:`KubernetesNodeReader`). Nothing is asked at connect time:
an apiserver that is down must not keep the daemon from starting.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sriovdp.errors import HostError
from sriovdp.kubelet.dra.claims import ClaimReader, KubernetesClaimReader
from sriovdp.kubelet.dra.httperrors import failure_text
from sriovdp.kubelet.dra.publisher import (
    WRITE_CONCURRENCY,
    JsonBody,
    KubernetesSliceApi,
    SliceApi,
    SliceApiError,
)
from sriovdp.threads import in_daemon_thread


class NodeReader(Protocol):
    """Reads the Node object of this node."""

    async def uid(self, node_name: str) -> str:
        """The Node's ``metadata.uid``.

        Raises:
            SliceApiError: not found or the apiserver could not be asked.
        """
        ...


@dataclass(frozen=True, slots=True)
class DraApis:
    """The apiserver as DRA mode uses it."""

    slices: SliceApi
    claims: ClaimReader
    nodes: NodeReader


class KubernetesNodeReader:
    """:class:`NodeReader` on ``kubernetes.client.CoreV1Api`` (call in a worker thread)."""

    def __init__(self, api: Any, *, timeout: float = 10.0) -> None:
        self._api = api
        self._timeout = timeout

    async def uid(self, node_name: str) -> str:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            node = await in_daemon_thread(functools.partial(
                self._api.read_node, node_name, _request_timeout=self._timeout))
        except ApiException as exc:
            raise SliceApiError(f"reading Node {node_name}: {exc.status} {exc.reason}",
                                exc.status) from exc
        except (OSError, ValueError, HTTPError) as exc:  # urllib3: MaxRetryError and others
            raise SliceApiError(f"reading Node {node_name}: {failure_text(exc)}") from exc
        return str(node.metadata.uid)


def connect(kubeconfig: Path | None) -> DraApis:
    """The ports on a client configured from ``kubeconfig`` (None: in-cluster, else the
    default kubeconfig).

    Raises:
        HostError: no usable configuration (the message names what was tried).
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if kubeconfig is not None:
            api = config.new_client_from_config(config_file=str(kubeconfig))
        else:
            try:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                api = client.ApiClient(configuration)
            except ConfigException:
                api = config.new_client_from_config()
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        where = f"--kubeconfig {kubeconfig}" if kubeconfig is not None else \
            "the in-cluster service account or $KUBECONFIG / ~/.kube/config"
        raise HostError(f"DRA mode needs the apiserver: cannot load {where}: {exc}") from exc
    # one attempt per call: SliceSync and the kubelet retry with their own back-off, and
    # urllib3's default retries would stretch a hung read from 10 s to about 40 s
    api.configuration.retries = 0
    # a connection for each slice written at once and some for claim reads: urllib3 drops
    # (and logs) connections beyond the pool's size (the client's default: 5 per CPU)
    api.configuration.connection_pool_maxsize = max(
        api.configuration.connection_pool_maxsize or 0, 2 * WRITE_CONCURRENCY)
    api = _api_client(api.configuration)
    return DraApis(slices=KubernetesSliceApi(client.ResourceV1Api(api)),
                   claims=KubernetesClaimReader(client.ResourceV1Api(api)),
                   nodes=KubernetesNodeReader(client.CoreV1Api(api)))


def _api_client(configuration: Any) -> Any:
    """A ``kubernetes.client.ApiClient`` that sends a :class:`JsonBody` as it is."""
    from kubernetes import client

    class ApiClient(client.ApiClient):  # type: ignore[misc]
        def sanitize_for_serialization(self, obj: Any) -> Any:
            if type(obj) is JsonBody:
                return obj
            return super().sanitize_for_serialization(obj)

    return ApiClient(configuration)
