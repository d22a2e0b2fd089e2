"""The lock file that decides which instance owns a pool's socket."""

from __future__ import annotations

import os
from pathlib import Path

from sriovdp.kubelet.socketlock import SocketLock, instance_lock


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


def test_instances_in_different_registration_modes_take_the_same_node_lock(
    tmp_path: Path,
) -> None:
    dp, reg = tmp_path / "device-plugins", tmp_path / "plugins_registry"
    socket_mode = instance_lock(dp, dp)
    watcher_mode = instance_lock(dp, reg)
    assert socket_mode.try_acquire()
    assert not watcher_mode.try_acquire()  # device-plugins/ is locked whatever the mode
    assert not (reg / ".sriovdp.lock").exists() or not watcher_mode.held
    socket_mode.release()
    assert watcher_mode.try_acquire() and watcher_mode.held


def test_an_instance_lock_is_all_or_none_when_an_older_instance_holds_the_registry_lock(
    tmp_path: Path,
) -> None:
    dp, reg = tmp_path / "device-plugins", tmp_path / "plugins_registry"
    older = SocketLock(reg / "sriovdp")  # where earlier versions took it in watcher mode
    assert older.try_acquire()
    newer = instance_lock(dp, reg)
    assert not newer.try_acquire()
    assert newer.holder() == str(os.getpid())  # the pid the older holder wrote
    third = instance_lock(dp, dp)
    assert third.try_acquire()  # the newer one let go of device-plugins/ again
    third.release()
    older.release()
    assert newer.try_acquire()


def test_the_instance_lock_holds_when_an_old_kubelet_deletes_every_file_in_device_plugins(
    tmp_path: Path,
) -> None:
    dp = tmp_path / "device-plugins"
    owner = instance_lock(dp, dp)
    assert owner.try_acquire()
    for path in dp.iterdir():  # a kubelet's clean-up before the socket-only one
        if path.is_file():
            path.unlink()
    assert not instance_lock(dp, dp).try_acquire()  # the lock in .sriovdp/ is still held
