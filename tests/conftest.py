"""Session-wide guard: no test writes to this machine's live plugin directories.

Tests run as root on a machine that could be a node, and the daemon's defaults point at the
node's real directories (``/var/run/k8s.cni.cncf.io/devinfo/dp``, which SR-IOV CNI reads;
``/var/run/cdi``; ``/var/lib/kubelet``; ``/etc/pcidp``). Every test must pass temp dirs
instead. The trees below are listed before the session and after it; any entry added,
removed or rewritten fails the run, naming the paths.

``/var/run/netns`` is left out: the netns tests create and delete named network namespaces
there on purpose (``ip netns``), and other sessions on this machine may do so concurrently.
Symlinks are not followed (``/var/run/shm`` points at ``/dev/shm``, which benches use).
``SRIOVDP_GUARDED_DIRS`` (paths joined by ``:``) replaces the guarded trees; the guard's own
test uses it to point the check at a temp dir.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

GUARDED = tuple(Path(p) for p in os.environ.get(
    "SRIOVDP_GUARDED_DIRS", "/var/run:/var/lib/kubelet:/etc/pcidp").split(":") if p)
IGNORED = (Path("/var/run/netns"),)

Snapshot = dict[str, tuple[str, int, int]]


def snapshot(roots: tuple[Path, ...] = GUARDED, ignored: tuple[Path, ...] = IGNORED) -> Snapshot:
    """Path → (kind, size, mtime in ns) of every entry below ``roots``; directories carry no
    size or mtime, so a file created and removed again inside one leaves no trace."""
    found: Snapshot = {}
    skip = {str(p) for p in ignored}
    for root in roots:
        for top, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
            for d in dirs:
                found[os.path.join(top, d)] = ("dir", 0, 0)
            for name in files:
                path = os.path.join(top, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                found[path] = ("file", st.st_size, st.st_mtime_ns)
    return found


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots, one line per path."""
    lines = [f"added {p}" for p in sorted(after.keys() - before.keys())]
    lines += [f"removed {p}" for p in sorted(before.keys() - after.keys())]
    lines += [f"rewritten {p}" for p in sorted(before.keys() & after.keys())
              if before[p] != after[p]]
    return lines



def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STASH] = snapshot()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_STASH, None)
    if before is None:
        return
    found = changes(before, snapshot())
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = ("tests wrote to this machine's live directories "
                f"({', '.join(map(str, GUARDED))}):\n  " + "\n  ".join(found))
        if reporter is not None:
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_STASH = pytest.StashKey[Snapshot]()


# --- leaks: every test ends the tasks and threads it started ---------------------------------

LEAK_GRACE = 2.0
"""Seconds a test's leftover tasks and threads get to end on their own before it fails."""


_LIBRARY_THREADS = (
    # grpc.aio's completion-queue poller: one per event loop, started and ended by grpc
    "(_poll_wrapper)",
)
_EXECUTOR_THREAD = re.compile(r"asyncio_\d+")
"""The test loop's default executor (``asyncio.to_thread``): idle workers live until the loop
closes, which pytest-asyncio does after this check; the loop's close joins them."""


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread it started running."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.endswith(_LIBRARY_THREADS)
            and not _EXECUTOR_THREAD.fullmatch(t.name)]
    for thread in left:
        thread.join(LEAK_GRACE / max(1, len(left)))
    left = [t for t in left if t.is_alive()]
    assert not left, f"threads still running after the test: {[t.name for t in left]}"


@pytest_asyncio.fixture(autouse=True)  # explicit: also in strict mode (a copied conftest)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks pending in its loop (a task nobody owns)."""
    yield
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=LEAK_GRACE)
        for task in still:
            task.cancel()
        assert not still, f"tasks still pending after the test: {sorted(map(_name, still))}"


def _name(task: asyncio.Task[object]) -> str:
    return f"{task.get_name()} {task.get_coro()!r}"
