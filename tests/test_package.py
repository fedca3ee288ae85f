import subprocess
import sys

import pytest

import torchrec_side


def test_public_names_resolve() -> None:
    for name in torchrec_side.__all__:
        assert getattr(torchrec_side, name) is not None
    with pytest.raises(AttributeError):
        torchrec_side.NoSuchThing  # noqa: B018


def test_cli_help_and_unknown_command() -> None:
    ok = subprocess.run([sys.executable, "-m", "torchrec_side.cli", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "torchrec-side tokenize" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "torchrec_side.cli", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2
