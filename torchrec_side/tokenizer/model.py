# pyre-strict
"""The VQ-fusion model: a multi-task VQ-VAE fusing M content collections and J categorical targets.

::

    x^(1) [d_1] -> normalize -> Linear -> \\
    ...                                    concat -> MLP -> z [D] -> bottleneck -> z_hat [D]
    x^(M) [d_M] -> normalize -> Linear -> /                                        |
                                                  decoder_m(z_hat) -> x^(m)  (cosine / MSE)
                                                  head_j(z_hat)    -> y^(j)  (BCE / CE)

    loss = sum_m w_m recon_m + sum_j w_j task_j + beta * commitment + codebook

See docs/design.md section 4 and :mod:`torchrec_side.tokenizer.bottleneck`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from torchrec_side.tokenizer.bottleneck import BottleneckOutput, ResidualBottleneck
from torchrec_side.tokenizer.config import CollectionConfig, FusionModelConfig, TargetConfig

__all__ = ["mlp", "CollectionNormalizer", "FusionOutput", "VQFusionModel", "resolve_model_config"]


def mlp(in_dim: int, hidden: List[int], out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """``Linear -> GELU -> Dropout`` per hidden width, then a final ``Linear`` to ``out_dim``."""
    layers: List[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.GELU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class CollectionNormalizer(nn.Module):
    """Fixed (non-learned) per-collection normalization; all-zero rows are "missing".

    Args:
        dim: ``d_m``.
        mode: ``"none"``, ``"l2"``, ``"standardize"`` (uses ``mean`` / ``std`` buffers set by
            :meth:`fit`) or ``"layernorm"`` (per-row, no affine).

    Example::

        norm = CollectionNormalizer(384, "l2")
        x_n, present = norm(x)            # [B, 384], bool [B]
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Sets ``mean`` / ``std`` from the present rows of ``x [N, d_m]`` (``standardize`` only)."""
        present = x.abs().sum(1) > 0
        xs = x[present].float()
        if self.mode == "standardize" and xs.shape[0] > 1:
            self.mean.copy_(xs.mean(0))
            self.std.copy_(xs.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, d_m]`` -> (normalized ``[B, d_m]``, zero on missing rows; present mask ``bool [B]``)."""
        x = x.float()
        present = x.abs().sum(1) > 0
        if self.mode == "l2":
            y = F.normalize(x, dim=1)
        elif self.mode == "standardize":
            y = (x - self.mean) / self.std
        elif self.mode == "layernorm":
            y = F.layer_norm(x, (x.shape[1],))
        else:
            y = x
        return y * present[:, None].to(y.dtype), present


@dataclass
class FusionOutput:
    """Result of :meth:`VQFusionModel.forward`.

    Args:
        z: ``[B, D]`` encoder output.
        z_hat: ``[B, D]`` straight-through quantized latent.
        codes: ``int64 [B, L]``.
        recon: per collection, reconstruction ``[B, d_m]`` (of the normalized input).
        logits: per target, ``[B, C_j]``.
        targets_in: per collection, the normalized input ``[B, d_m]`` the decoder aims at.
        present: per collection, ``bool [B]`` rows that are not missing.
        losses: ``"recon/<name>"``, ``"task/<name>"``, ``"commitment"``, ``"codebook"``,
            ``"total"`` (scalars; present when targets were given for the ``task`` terms).
        restarted: codewords re-seeded in this step.
    """

    z: torch.Tensor
    z_hat: torch.Tensor
    codes: torch.Tensor
    recon: Dict[str, torch.Tensor]
    logits: Dict[str, torch.Tensor]
    targets_in: Dict[str, torch.Tensor]
    present: Dict[str, torch.Tensor]
    losses: Dict[str, torch.Tensor] = field(default_factory=dict)
    restarted: int = 0


def resolve_model_config(
    config: FusionModelConfig,
    dims: Optional[Mapping[str, int]] = None,
    num_classes: Optional[Mapping[str, int]] = None,
) -> FusionModelConfig:
    """A copy of ``config`` with every ``dim`` / ``num_classes`` of 0 filled from the data.

    Raises:
        ValueError: a collection or target is neither sized in the config nor in the data, or the
            two disagree.
    """
    cfg = copy.deepcopy(config)
    dims = dict(dims or {})
    num_classes = dict(num_classes or {})
    for c in cfg.collections:
        if c.name in dims:
            if c.dim and c.dim != dims[c.name]:
                raise ValueError(f"collection {c.name!r}: config says dim={c.dim}, data has {dims[c.name]}")
            c.dim = int(dims[c.name])
        if c.dim < 1:
            raise ValueError(f"collection {c.name!r}: dim unknown (not in the data; available: {sorted(dims)})")
    for t in cfg.targets:
        if t.name in num_classes:
            if t.num_classes and t.num_classes != num_classes[t.name]:
                raise ValueError(
                    f"target {t.name!r}: config says num_classes={t.num_classes}, data has {num_classes[t.name]}"
                )
            t.num_classes = int(num_classes[t.name])
        if t.num_classes < 1 or (t.kind == "single_label" and t.num_classes < 2):
            raise ValueError(
                f"target {t.name!r}: num_classes unknown or too small (available: {sorted(num_classes)})"
            )
    return cfg


class VQFusionModel(nn.Module):
    """Multi-task VQ-VAE tokenizer over ``M >= 1`` content collections and ``J >= 0`` targets.

    Args:
        config: :class:`~torchrec_side.tokenizer.config.FusionModelConfig`; every collection's
            ``dim`` and every target's ``num_classes`` must be set (see
            :func:`resolve_model_config`).

    Inputs are dicts keyed by collection / target name: collections ``[B, d_m]`` float (all-zero
    rows = missing), multi-label targets ``[B, C]`` (0/1, any dtype), single-label targets
    ``[B]`` int64 (``-1`` = unknown).

    Example::

        cfg = FusionModelConfig(
            collections=[CollectionConfig("text", dim=384), CollectionConfig("cf", dim=64, normalize="standardize")],
            targets=[TargetConfig("genres", "multi_label", 19), TargetConfig("year", "single_label", 7)],
            latent_dim=64,
            bottleneck=BottleneckConfig(kind="dpca", num_levels=40, codes=3),
        )
        model = VQFusionModel(cfg)
        model.bottleneck.initialize(model.encode(inputs))
        out = model(inputs, targets)          # FusionOutput
        out.losses["total"].backward()
        out.codes.shape                       # [B, 40]
    """

    def __init__(self, config: FusionModelConfig) -> None:
        super().__init__()
        for c in config.collections:
            if c.dim < 1:
                raise ValueError(f"collection {c.name!r}: dim must be set (use resolve_model_config)")
        for t in config.targets:
            if t.num_classes < 1:
                raise ValueError(f"target {t.name!r}: num_classes must be set (use resolve_model_config)")
        self.config = config
        self.collections: List[CollectionConfig] = list(config.collections)
        self.targets: List[TargetConfig] = list(config.targets)
        d = config.latent_dim
        self.normalizers = nn.ModuleDict({c.name: CollectionNormalizer(c.dim, c.normalize) for c in self.collections})
        self.projections = nn.ModuleDict({c.name: nn.Linear(c.dim, c.proj_dim) for c in self.collections})
        concat = sum(c.proj_dim for c in self.collections)
        self.encoder = mlp(concat, config.encoder_hidden, d, config.dropout)
        self.bottleneck = ResidualBottleneck(config.bottleneck, d)
        self.decoders = nn.ModuleDict(
            {c.name: mlp(d, c.decoder_hidden, c.dim, config.dropout) for c in self.collections}
        )
        self.heads = nn.ModuleDict({t.name: mlp(d, t.hidden, t.num_classes) for t in self.targets})

    # ------------------------------------------------------------------ pieces

    @property
    def collection_names(self) -> List[str]:
        return [c.name for c in self.collections]

    @property
    def target_names(self) -> List[str]:
        return [t.name for t in self.targets]

    @property
    def radices(self) -> List[int]:
        return list(self.bottleneck.radices)

    def _check_inputs(self, inputs: Mapping[str, torch.Tensor]) -> int:
        missing = [c.name for c in self.collections if c.name not in inputs]
        if missing:
            raise KeyError(f"missing content collections {missing}; the tokenizer needs {self.collection_names}")
        n = -1
        for c in self.collections:
            x = inputs[c.name]
            if x.dim() != 2 or x.shape[1] != c.dim:
                raise ValueError(f"collection {c.name!r}: expected shape [N, {c.dim}], got {tuple(x.shape)}")
            if n >= 0 and x.shape[0] != n:
                raise ValueError(f"collection {c.name!r} has {x.shape[0]} rows, others have {n}")
            n = x.shape[0]
        return n

    @torch.no_grad()
    def fit_normalizers(self, inputs: Mapping[str, torch.Tensor]) -> None:
        """Sets the ``standardize`` statistics from training items ``{name: [N, d_m]}``."""
        self._check_inputs(inputs)
        for c in self.collections:
            norm = self.normalizers[c.name]
            assert isinstance(norm, CollectionNormalizer)
            norm.fit(inputs[c.name].to(self.bottleneck.offset.device))

    def normalize(self, inputs: Mapping[str, torch.Tensor]) -> Dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per collection ``(x_norm [B, d_m], present bool [B])``."""
        self._check_inputs(inputs)
        return {c.name: self.normalizers[c.name](inputs[c.name]) for c in self.collections}

    def _encode_normalized(self, normed: Dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        parts = [normed[c.name][0] for c in self.collections]
        if self.training and self.config.input_dropout > 0 and len(parts) > 1:
            present = torch.stack([normed[c.name][1] for c in self.collections], 1)  # [B, M]
            drop = (torch.rand(present.shape, device=present.device) < self.config.input_dropout) & present
            all_gone = (present & ~drop).sum(1) == 0
            drop[all_gone] = False
            parts = [p * (~drop[:, i, None]).to(p.dtype) for i, p in enumerate(parts)]
        h = torch.cat([self.projections[c.name](p) for c, p in zip(self.collections, parts)], dim=1)
        z = self.encoder(h)
        if self.config.normalize_latent:
            z = F.layer_norm(z, (z.shape[1],))
        return z

    def encode(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Latent ``z [B, D]`` of items ``{name: [B, d_m]}`` (before quantization)."""
        return self._encode_normalized(self.normalize(inputs))

    @torch.no_grad()
    def tokenize(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Codes ``int64 [B, L]`` of items ``{name: [B, d_m]}``."""
        return self.bottleneck.encode(self.encode(inputs))

    def decode_latent(self, z_hat: torch.Tensor) -> tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """``z_hat [B, D]`` -> (reconstructions ``{name: [B, d_m]}``, logits ``{name: [B, C_j]}``)."""
        recon = {c.name: self.decoders[c.name](z_hat) for c in self.collections}
        logits = {t.name: self.heads[t.name](z_hat) for t in self.targets}
        return recon, logits

    # ------------------------------------------------------------------ forward / losses

    def forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        targets: Optional[Mapping[str, torch.Tensor]] = None,
        quantize: bool = True,
    ) -> FusionOutput:
        """Encodes, quantizes, decodes; computes every loss term.

        Args:
            inputs: ``{collection: [B, d_m]}``.
            targets: ``{target: [B, C] or [B]}``; targets left out get no task loss.
            quantize: ``False`` bypasses the bottleneck (``z_hat = z``, codes ``[B, 0]``, zero
                commitment): the continuous warm-up before the bottleneck is initialized.

        Returns:
            :class:`FusionOutput` with ``losses["total"]`` ready for ``backward()``.
        """
        normed = self.normalize(inputs)
        z = self._encode_normalized(normed)
        if quantize:
            bn = self.bottleneck(z)
        else:
            zero = z.new_zeros(())
            bn = BottleneckOutput(z, z, torch.zeros(z.shape[0], 0, dtype=torch.long, device=z.device), zero, zero)
        recon, logits = self.decode_latent(bn.z_hat)
        out = FusionOutput(
            z=z,
            z_hat=bn.z_hat,
            codes=bn.codes,
            recon=recon,
            logits=logits,
            targets_in={k: v[0] for k, v in normed.items()},
            present={k: v[1] for k, v in normed.items()},
            restarted=bn.restarted,
        )
        losses: Dict[str, torch.Tensor] = {}
        total = z.new_zeros(())
        for c in self.collections:
            term = recon_loss(recon[c.name], out.targets_in[c.name], out.present[c.name], c.loss)
            losses[f"recon/{c.name}"] = term
            total = total + c.weight * term
        for t in self.targets:
            if targets is None or t.name not in targets:
                continue
            term = task_loss(logits[t.name], targets[t.name], t)
            losses[f"task/{t.name}"] = term
            total = total + t.weight * term
        losses["commitment"] = bn.commitment_loss
        losses["codebook"] = bn.codebook_loss
        total = total + self.config.bottleneck.commitment * bn.commitment_loss + bn.codebook_loss
        losses["total"] = total
        out.losses = losses
        return out


def recon_loss(x_hat: torch.Tensor, x: torch.Tensor, present: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean reconstruction loss over present rows: ``1 - cos`` or per-element MSE (0 if none)."""
    if not bool(present.any()):
        return x_hat.sum() * 0.0
    xh, xt = x_hat[present], x[present]
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(xh, xt, dim=1, eps=1e-8)).mean()
    return F.mse_loss(xh, xt)


def task_loss(logits: torch.Tensor, y: torch.Tensor, target: TargetConfig) -> torch.Tensor:
    """BCE-with-logits (multi-label ``y [B, C]``) or cross-entropy (single-label ``y [B]``, ``-1`` ignored)."""
    if target.kind == "multi_label":
        if y.shape != logits.shape:
            raise ValueError(f"target {target.name!r}: expected labels of shape {tuple(logits.shape)}, got {tuple(y.shape)}")
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    if y.dim() != 1 or y.shape[0] != logits.shape[0]:
        raise ValueError(f"target {target.name!r}: expected class indices of shape [{logits.shape[0]}], got {tuple(y.shape)}")
    y = y.long()
    valid = y >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid], y[valid])
