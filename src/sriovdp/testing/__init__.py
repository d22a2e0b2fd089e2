"""sriovdp.testing: working fakes at the daemon's ports (FakeHost, KubeletEmulator,
FakeLinkSource, FakeUeventSource, FakePodResources) and :func:`eventually`."""

from sriovdp.testing.waiting import eventually

__all__ = ["eventually"]
