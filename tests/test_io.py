# pyre-strict
"""Atomic writes: a save killed with SIGKILL at any point leaves the previous artifact (or the new
one) under its name, and the next save or load cleans up what the killed one left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

import torchrec_side.io as io
from torchrec_side.io import atomic_dir, atomic_path, recover, write_json

# A child that saves an artifact folder at ARGV[1] and stops (sleeps) at the point ARGV[2] names,
# after printing "READY": "write" (inside the with-block, 2 MB written) or "swap" (old folder
# renamed to its backup, new one not yet in place).
_CHILD = r"""
import os, sys, time
from pathlib import Path
import torchrec_side.io as io

target, where = Path(sys.argv[1]), sys.argv[2]
real_replace = os.replace

def replace(src, dst):
    real_replace(src, dst)
    if where == "swap" and str(dst).endswith(".old"):
        print("READY", flush=True)
        time.sleep(600)

io.os.replace = replace
with io.atomic_dir(target, "version.txt") as tmp:
    (tmp / "payload.bin").write_bytes(os.urandom(2 << 20))
    (tmp / "version.txt").write_text("new")
    if where == "write":
        print("READY", flush=True)
        time.sleep(600)
"""


def _old_artifact(target: Path) -> None:
    with atomic_dir(target, "version.txt") as tmp:
        (tmp / "version.txt").write_text("old")


def _kill_child_at(target: Path, where: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(io.__file__).resolve().parent.parent))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(target), where], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "READY", f"child did not reach {where!r}: {line!r}"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _leftovers(parent: Path) -> List[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_kill_during_write_keeps_old_and_next_save_cleans(tmp_path: Path) -> None:
    target = tmp_path / "artifact"
    _old_artifact(target)
    _kill_child_at(target, "write")
    assert (target / "version.txt").read_text() == "old"
    left = _leftovers(tmp_path)
    assert len(left) == 1 and left[0].endswith(".tmp"), left  # the killed save's 2 MB folder
    assert (tmp_path / left[0] / "payload.bin").stat().st_size == 2 << 20
    with atomic_dir(target, "version.txt") as tmp:
        (tmp / "version.txt").write_text("third")
    assert (target / "version.txt").read_text() == "third"
    assert _leftovers(tmp_path) == []


def test_kill_between_renames_is_recovered(tmp_path: Path) -> None:
    target = tmp_path / "artifact"
    _old_artifact(target)
    _kill_child_at(target, "swap")
    assert not target.exists()  # the window the two renames open
    assert any(n.endswith(".old") for n in _leftovers(tmp_path))
    touched = recover(target)  # what loaders call before reading
    assert target in touched
    assert (target / "version.txt").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_kill_between_renames_then_save(tmp_path: Path) -> None:
    target = tmp_path / "artifact"
    _old_artifact(target)
    _kill_child_at(target, "swap")
    with atomic_dir(target, "version.txt") as tmp:
        (tmp / "version.txt").write_text("third")
    assert (target / "version.txt").read_text() == "third"
    assert _leftovers(tmp_path) == []


def test_live_writers_entries_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    with atomic_path(target) as tmp:
        recover(target)  # our own temporary file: a live writer
        assert tmp.exists()
        tmp.write_text("{}")
    assert target.read_text() == "{}"
    # another live process's entry (pid 1 always runs) is kept, a dead pid's is removed
    live = tmp_path / f".a.json.{io._HOST}-1.abcdef.tmp"
    live.write_text("x")
    dead_pid = _dead_pid()
    dead = tmp_path / f".a.json.{io._HOST}-{dead_pid}.abcdef.tmp"
    dead.write_text("x")
    other = tmp_path / ".b.json.host-99999999.abcdef.tmp"  # another target's entry
    other.write_text("x")
    write_json(target, {"k": 1})
    assert live.exists() and not dead.exists() and other.exists()


def test_old_entries_of_other_hosts_expire(tmp_path: Path) -> None:
    target = tmp_path / "art"
    foreign = tmp_path / ".art.otherhost-12.0123ab.tmp"
    foreign.mkdir()
    recover(target)
    assert foreign.exists()  # pid unknowable on another host: kept while young
    old = time.time() - io.STALE_AFTER_S - 60
    os.utime(foreign, (old, old))
    recover(target)
    assert not foreign.exists()


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "d"
    with pytest.raises(RuntimeError):
        with atomic_dir(target, "version.txt") as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "f.json") as tmpf:
            tmpf.write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_shared_permissions(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "d", "f") as tmp:
        (tmp / "f").write_text("x")
    write_json(tmp_path / "j.json", [1])
    assert (tmp_path / "d").stat().st_mode & 0o755 == 0o755
    assert (tmp_path / "j.json").stat().st_mode & 0o644 == 0o644


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_atomic_dir_replaces_only_its_own_kind(tmp_path: Path) -> None:
    """Issue 17 (severe): ``--out DIR`` used to replace whatever sat at DIR. A folder without the
    artifact's marker file (a user's folder, a run folder) or a file is refused, untouched."""
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(io.ArtifactError, match="no manifest.json.*refusing to replace"):
        with atomic_dir(user, "manifest.json") as tmp:
            (tmp / "manifest.json").write_text("{}")
    assert (user / "thesis.tex").read_text() == "years of work" and _leftovers(tmp_path) == []
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(io.ArtifactError, match="not a folder"):
        with atomic_dir(afile, "manifest.json"):
            pass
    empty = tmp_path / "empty"
    empty.mkdir()
    for _ in range(2):  # an empty folder, then its own earlier artifact, are replaced
        with atomic_dir(empty, "manifest.json") as tmp:
            (tmp / "manifest.json").write_text("{}")
    assert (empty / "manifest.json").is_file()


def test_a_cache_path_that_is_a_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(io.CACHE_ENV, str(tmp_path / "c"))
    assert io.cache_dir() == tmp_path / "c"  # not created by the call
    (tmp_path / "c").write_text("x")
    with pytest.raises(io.ArtifactError, match=r"cache folder .*/c .* is a file, not a folder"):
        io.cache_dir()


def test_check_own_folder_refuses_foreign_entries_and_files_in_the_way(tmp_path: Path) -> None:
    own = {"config.yaml", "stats.json"}
    io.check_own_folder(tmp_path / "new" / "run", own, "run")  # free
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("")
    (run / ".config.yaml.host-1.abc.tmp").write_text("")  # a temporary entry of an atomic write
    io.check_own_folder(run, own, "run")
    (run / "notes.txt").write_text("")
    with pytest.raises(io.ArtifactError, match=r"holds \['notes.txt'\]"):
        io.check_own_folder(run, own, "run")
    (tmp_path / "f").write_text("")
    with pytest.raises(io.ArtifactError, match="is not a folder"):
        io.check_own_folder(tmp_path / "f" / "run", own, "run")
