"""The lock file that decides which instance owns a pool's socket."""

from __future__ import annotations

import os
from pathlib import Path

from sriovdp.kubelet.socketlock import SocketLock


def test_second_holder_is_refused_when_the_lock_is_held(tmp_path: Path) -> None:
    first, second = SocketLock(tmp_path / "a.sock"), SocketLock(tmp_path / "a.sock")
    assert first.try_acquire() and first.valid
    assert first.path == tmp_path / ".a.sock.lock"
    assert not second.try_acquire() and not second.held
    assert second.holder() == str(os.getpid())


def test_lock_passes_on_and_its_file_goes_when_the_holder_releases(tmp_path: Path) -> None:
    first, second = SocketLock(tmp_path / "a.sock"), SocketLock(tmp_path / "a.sock")
    assert first.try_acquire()
    first.release()
    assert not first.path.exists()
    assert second.try_acquire()


def test_lock_is_no_longer_valid_when_its_file_is_deleted(tmp_path: Path) -> None:
    first, second = SocketLock(tmp_path / "a.sock"), SocketLock(tmp_path / "a.sock")
    assert first.try_acquire()
    first.path.unlink()
    assert not first.valid
    assert second.try_acquire()  # a new file: the new holder
    first.release()  # must not remove the new holder's file
    assert second.valid and second.path.exists()


def test_locks_of_two_sockets_are_independent_when_both_are_taken(tmp_path: Path) -> None:
    a, b = SocketLock(tmp_path / "a.sock"), SocketLock(tmp_path / "b.sock")
    assert a.try_acquire() and b.try_acquire()
