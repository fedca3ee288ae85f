"""Maps the repository's top-level ``configs/`` onto the package ``torchrec_side.configs``.

Everything else is declared in ``pyproject.toml``. The package list is computed here because
``[tool.setuptools.packages.find]`` cannot add a package that lives outside ``torchrec_side/``;
the mapping keeps one copy of the configs, shipped as package data (wheel and editable installs).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["torchrec_side", "torchrec_side.*"]) + ["torchrec_side.configs"],
    package_dir={"torchrec_side.configs": "configs"},
)
