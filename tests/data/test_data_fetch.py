"""fetch: cache folder, one download, atomic placement, no-op when present, clear failure."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from torchrec_side.data import fetch


@pytest.fixture(scope="module")
def real_wheel() -> Path:
    return fetch.ensure_recbole_wheel()


def test_cache_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "c"))
    assert fetch.cache_dir() == tmp_path / "c"
    assert fetch.recbole_wheel_path() == tmp_path / "c" / "recbole-1.2.1" / (
        "recbole-1.2.1-py3-none-any.whl"
    )
    monkeypatch.delenv(fetch.CACHE_ENV)
    assert fetch.cache_dir() == Path.home() / ".cache" / "torchrec_side"


def test_real_wheel_holds_movielens(real_wheel: Path) -> None:
    with zipfile.ZipFile(real_wheel) as zf:
        names = set(zf.namelist())
    assert set(fetch.RECBOLE_ML100K_FILES) <= names


def _fake_pip(real_wheel: Path, calls: list[list[str]]) -> Any:
    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in cmd
        assert "recbole==1.2.1" in cmd
        dest = Path(cmd[cmd.index("-d") + 1])
        shutil.copy(real_wheel, dest / real_wheel.name)
        return subprocess.CompletedProcess(cmd, 0, stdout="ok")

    return run


def test_download_once_then_noop(
    real_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", _fake_pip(real_wheel, calls))
    w = fetch.ensure_recbole_wheel()
    assert w == fetch.recbole_wheel_path() and w.is_file() and len(calls) == 1
    assert fetch.ensure_recbole_wheel() == w and len(calls) == 1, "second call must not run pip"
    # nothing left behind but the final folder
    assert [p.name for p in tmp_path.iterdir()] == ["recbole-1.2.1"]


def test_failed_download_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))

    def fail(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, stdout="ERROR: No matching distribution")

    monkeypatch.setattr(subprocess, "run", fail)
    with pytest.raises(RuntimeError, match="(?s)No matching distribution.*TORCHREC_SIDE_ML100K"):
        fetch.ensure_recbole_wheel()
    assert list(tmp_path.iterdir()) == []


def test_bad_download_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))

    def junk(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "recbole-1.2.1-py3-none-any.whl").write_bytes(b"truncated")
        return subprocess.CompletedProcess(cmd, 0, stdout="")

    monkeypatch.setattr(subprocess, "run", junk)
    with pytest.raises(ValueError, match="not a readable wheel"):
        fetch.ensure_recbole_wheel()
    assert list(tmp_path.iterdir()) == []


def test_main_prints_one_line(
    real_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv(fetch.ML100K_ENV, raising=False)
    monkeypatch.setenv(fetch.CACHE_ENV, str(real_wheel.parent.parent))
    assert fetch.main() == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and str(real_wheel) in out[0]
    monkeypatch.setenv(fetch.ML100K_ENV, str(tmp_path))
    assert fetch.main() == 0
    assert str(tmp_path) in capsys.readouterr().out
    monkeypatch.setenv(fetch.ML100K_ENV, str(tmp_path / "missing"))
    assert fetch.main() == 2  # bad input, like every command
