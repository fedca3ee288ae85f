"""Maps the repository's top-level ``configs/`` onto the package ``torchrec_side.configs``.

Everything else is declared in ``pyproject.toml``. The package list is computed here because
``[tool.setuptools.packages.find]`` cannot add a package that lives outside ``torchrec_side/``;
the mapping keeps one copy of the configs, shipped as package data (wheel and editable installs).
Each world's folder (``configs/<world>/*.yaml``) is a data-only subpackage; its YAML files are
package data (``[tool.setuptools.package-data]`` in ``pyproject.toml``, which setuptools reads in
place of any ``package_data`` given here).
"""

from pathlib import Path

from setuptools import find_packages, setup

worlds = sorted(p.name for p in (Path(__file__).parent / "configs").iterdir()
                if p.is_dir() and p.name.isidentifier() and not p.name.startswith("_"))
config_packages = ["torchrec_side.configs"] + [f"torchrec_side.configs.{w}" for w in worlds]

setup(
    packages=find_packages(include=["torchrec_side", "torchrec_side.*"]) + config_packages,
    package_dir={"torchrec_side.configs": "configs"},
)
