"""pyg_schnet.io: durable writes, atomic copies and the one lock helper."""

import multiprocessing as mp
import os
import time

import pytest

from pyg_schnet.io import TMP_MARK, atomic_write, copy_file, locked, write_csv, write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "f.txt")
    with atomic_write(path) as f:
        f.write("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("new, half written")
            raise RuntimeError("disk full")
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_json_and_csv_round_trip(tmp_path):
    write_json(str(tmp_path / "m.json"), {"a": 1.5})
    assert open(tmp_path / "m.json").read().strip().startswith("{")
    write_csv(str(tmp_path / "l.csv"), ["x", "y"], [{"x": 1, "y": 2}])
    assert open(tmp_path / "l.csv").read().splitlines() == ["x,y", "1,2"]


def test_copy_file_replaces_the_target_whole(tmp_path, monkeypatch):
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(b"n" * 100_000)
    dst.write_bytes(b"old")
    copy_file(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()

    import shutil

    def broken(fin, fout, *a):  # the disk fills half-way through the copy
        fout.write(fin.read(4096))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", broken)
    dst.write_bytes(b"old")
    with pytest.raises(OSError):
        copy_file(str(src), str(dst))
    assert dst.read_bytes() == b"old"  # no 4 KB stub
    assert not [f for f in os.listdir(tmp_path) if TMP_MARK in f]


def _hold(path, seconds, ready):
    with locked(path):
        ready.set()
        time.sleep(seconds)


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_locked_excludes_another_process_until_it_ends(tmp_path, kind):
    path = str(tmp_path / ".lock") if kind == "file" else str(tmp_path)
    ready = mp.get_context("fork").Event()
    p = mp.get_context("fork").Process(target=_hold, args=(path, 30, ready))
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(BlockingIOError):
            with locked(path, wait=False):
                pass
        with pytest.raises(BlockingIOError):
            with locked(path, exclusive=False, wait=False):
                pass
    finally:
        p.kill()  # a killed holder's lock is free at once
        p.join()
    with locked(path, wait=False):
        pass


def test_shared_locks_coexist(tmp_path):
    path = str(tmp_path / ".lock")
    with locked(path, exclusive=False), locked(path, exclusive=False, wait=False):
        pass


def test_json_has_no_nan(tmp_path):
    """A missing measurement is null: metrics.json stays valid JSON."""
    import json

    write_json(str(tmp_path / "m.json"), {"test_mae": float("nan"), "x": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"test_mae": None, "x": [None, 1.0]}
