"""Another vendor's device plugin on the node, whose ``Allocate`` takes a while (a GPU or
accelerator plugin doing set-up work): the kubelet's device manager writes its checkpoint
only after every resource of a container was allocated, so the write of the grants made
before waits for this one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from sriovdp.kubelet.api import deviceplugin_pb2 as pb, deviceplugin_pb2_grpc as pb_grpc


class SlowPlugin(pb_grpc.DevicePluginServicer):
    """``resource`` with ``count`` devices (``s0``, ``s1``...) on ``<dir>/slow.sock``;
    each ``Allocate`` sleeps ``delay`` seconds. ``called`` is set when one starts."""

    def __init__(self, device_plugin_dir: Path, resource: str, *, delay: float,
                 count: int = 4) -> None:
        self.dir = device_plugin_dir
        self.resource = resource
        self.delay = delay
        self.count = count
        self.called = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._done = asyncio.Event()

    async def __aenter__(self) -> SlowPlugin:
        socket = self.dir / "slow.sock"
        socket.unlink(missing_ok=True)
        self._server = grpc.aio.server()
        pb_grpc.add_DevicePluginServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix://{socket}")
        await self._server.start()
        async with grpc.aio.insecure_channel(f"unix://{self.dir / 'kubelet.sock'}") as ch:
            await pb_grpc.RegistrationStub(ch).Register(pb.RegisterRequest(
                version="v1beta1", endpoint=socket.name, resource_name=self.resource,
                options=pb.DevicePluginOptions()), timeout=5)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._done.set()
        if self._server is not None:
            await self._server.stop(0)

    async def GetDevicePluginOptions(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.DevicePluginOptions()

    async def ListAndWatch(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        yield pb.ListAndWatchResponse(devices=[pb.Device(ID=f"s{i}", health="Healthy")
                                               for i in range(self.count)])
        await self._done.wait()

    async def Allocate(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.called.set()
        await asyncio.sleep(self.delay)
        return pb.AllocateResponse(container_responses=[
            pb.ContainerAllocateResponse() for _ in request.container_requests])

    async def GetPreferredAllocation(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.PreferredAllocationResponse()

    async def PreStartContainer(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.PreStartContainerResponse()
