"""The project's YAML configs, ``configs/<world>/<name>.yaml``, installed as the package data of
``torchrec_side.configs`` (``setup.py`` maps this folder there). Resolving a ``--config`` name:
:func:`torchrec_side.config.resolve_config`."""
