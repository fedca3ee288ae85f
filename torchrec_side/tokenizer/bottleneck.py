# pyre-strict
"""Differentiable residual bottlenecks: RQ with learned codebooks and Discrete-PCA (DPCA).

Both are the trainable counterparts of the section-3 quantizers
(:class:`~torchrec_side.quantizers.RQKMeans`, :class:`~torchrec_side.quantizers.DPCA`) and
share one parametrization. Level ``l`` has a basis ``V_l [D, m_l]`` (orthonormal columns; the
identity for RQ, the top principal directions of the level's residual for DPCA, fixed after
initialization) and codewords ``C_l [K_l, m_l]``. Encoding a latent ``z [B, D]``::

    r_1 = z - offset
    c_l = argmin_k || r_l V_l - C_l[k] ||          (nearest codeword in the level's sub-space)
    r_{l+1} = r_l - C_l[c_l] V_l^T
    z_q = offset + sum_l T_l[c_l],   T_l = C_l V_l^T   [K_l, D]

Training uses the straight-through estimator ``z_hat = z + sg(z_q - z)`` (gradients of the
decoders reach the encoder unchanged), a commitment loss ``||z - sg(z_q)||^2``, and either EMA
codeword updates or a codebook loss ``sum_l ||sg(r_l V_l) - C_l[c_l]||^2``. Codewords whose
usage share falls below ``dead_threshold / K_l`` are re-seeded from the batch.
:meth:`ResidualBottleneck.initialize` fits offset, bases and codewords to a sample of latents
(PCA + k-means, exactly like the non-learned DPCA / RQ-KMeans fit), and
:meth:`ResidualBottleneck.to_quantizer` exports the frozen tables as a real
:class:`~torchrec_side.quantizers.DPCA`, so anything that accepts a quantizer accepts the learned
bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from torchrec_side.quantizers.dpca import DPCA, DPCAConfig, DPCALevel
from torchrec_side.quantizers.kmeans import KMeansConfig, kmeans, nearest
from torchrec_side.tokenizer.config import BottleneckConfig

__all__ = ["BottleneckOutput", "ResidualBottleneck"]


@dataclass
class BottleneckOutput:
    """Result of :meth:`ResidualBottleneck.forward`.

    Args:
        z_hat: ``[B, D]`` straight-through quantized latent (value of ``z_q``, gradient of ``z``).
        z_q: ``[B, D]`` quantized latent ``offset + sum_l T_l[c_l]`` (gradient reaches the
            codewords when they are parameters).
        codes: ``int64 [B, L]``.
        commitment_loss: scalar ``mean ||z - sg(z_q)||^2`` (per element, unweighted).
        codebook_loss: scalar codebook loss (zero with EMA updates).
        restarted: number of codewords re-seeded during this call.
    """

    z_hat: torch.Tensor
    z_q: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    restarted: int = 0
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)


def _nearest_codeword(p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index ``[B]`` of the nearest row of ``c [K, m]`` for each row of ``p [B, m]``.

    Scalar levels (``m = 1``) bucketize against midpoints of the sorted codewords, like
    :class:`~torchrec_side.quantizers.DPCA` does, so both give the same codes.
    """
    if c.shape[1] == 1:
        vals, order = c[:, 0].sort()
        mids = (vals[1:] + vals[:-1]) * 0.5
        return order[torch.bucketize(p[:, 0].contiguous(), mids)]
    return nearest(p, c)[0]


def _top_directions(r: torch.Tensor, m: int) -> torch.Tensor:
    """Top-``m`` principal directions ``[D, m]`` of the rows of ``r`` (deterministic signs)."""
    rc = (r - r.mean(0, keepdim=True)).double()
    cov = rc.T @ rc / max(r.shape[0] - 1, 1)
    _, vecs = torch.linalg.eigh(cov)
    v = vecs[:, -m:].flip(1)
    sign = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (v * sign).to(r.dtype)


def _or(t: Optional[torch.Tensor], default: torch.Tensor) -> torch.Tensor:
    return default if t is None else t


class ResidualBottleneck(nn.Module):
    """Trainable residual quantizer of latents ``z [B, D]`` (RQ or DPCA, see module docstring).

    Args:
        config: :class:`~torchrec_side.tokenizer.config.BottleneckConfig`.
        dim: ``D``, the latent width.

    Example::

        bn = ResidualBottleneck(BottleneckConfig(kind="dpca", num_levels=16, codes=3), dim=32)
        bn.initialize(torch.randn(1000, 32))
        out = bn(torch.randn(64, 32, requires_grad=True))
        out.z_hat.shape, out.codes.shape          # [64, 32], [64, 16]
        offset, tables = bn.level_tables()        # [32], 16 x [3, 32]
        q = bn.to_quantizer()                     # a fitted DPCA over the latent space
    """

    offset: torch.Tensor
    initialized: torch.Tensor
    steps: torch.Tensor

    def __init__(self, config: BottleneckConfig, dim: int) -> None:
        super().__init__()
        self.config = config
        self.dim = int(dim)
        self.kind: str = config.kind
        self.radices: List[int] = config.level_radices()
        self.widths: List[int] = config.level_widths(self.dim)
        self.register_buffer("offset", torch.zeros(self.dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.codebooks = nn.ParameterList()
        for level, (k, m) in enumerate(zip(self.radices, self.widths)):
            if self.kind == "dpca":
                self.register_buffer(f"basis_{level}", torch.eye(self.dim)[:, :m].clone())
            cb = nn.Parameter(torch.randn(k, m) * 0.01, requires_grad=not config.ema)
            self.codebooks.append(cb)
            self.register_buffer(f"usage_{level}", torch.full((k,), 1.0 / k))
            if config.ema:
                self.register_buffer(f"ema_count_{level}", torch.full((k,), 1.0 / k))
                self.register_buffer(f"ema_sum_{level}", torch.zeros(k, m))

    # ------------------------------------------------------------------ helpers

    @property
    def num_levels(self) -> int:
        return len(self.radices)

    def basis(self, level: int) -> Optional[torch.Tensor]:
        """``V_l [D, m_l]`` (``None`` for RQ: the identity)."""
        return getattr(self, f"basis_{level}") if self.kind == "dpca" else None

    def _project(self, r: torch.Tensor, level: int) -> torch.Tensor:
        v = self.basis(level)
        return r if v is None else r @ v

    def _lift(self, p: torch.Tensor, level: int) -> torch.Tensor:
        v = self.basis(level)
        return p if v is None else p @ v.T

    def level_tables(self) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``(offset [D], [T_l [K_l, D]])`` with ``z_q = offset + sum_l T_l[c_l]`` (detached)."""
        with torch.no_grad():
            tables = [self._lift(self.codebooks[level].detach(), level).clone() for level in range(self.num_levels)]
        return self.offset.detach().clone(), tables

    def level_factors(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per level ``(C_l [K_l, m_l], V_l [D, m_l])`` (``V_l`` is the identity for RQ)."""
        eye = torch.eye(self.dim, device=self.offset.device)
        return [
            (self.codebooks[level].detach().clone(), _or(self.basis(level), eye).clone())
            for level in range(self.num_levels)
        ]

    # ------------------------------------------------------------------ init

    @torch.no_grad()
    def initialize(self, z: torch.Tensor, generator: Optional[torch.Generator] = None) -> None:
        """Fits offset, bases (DPCA: PCA of each level's residual) and codewords (k-means) to ``z``.

        Args:
            z: ``[N, D]`` latents, e.g. the encoder's output on the first training batches.
                With ``N < K_l`` the sample is repeated with a little noise.
            generator: seeds k-means++ (CPU generator).
        """
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        z = z.detach().float()
        kmax = max(self.radices)
        if z.shape[0] < kmax:
            reps = -(-kmax // max(z.shape[0], 1))
            z = z.repeat(reps, 1)
            z = z + 1e-3 * z.std().clamp_min(1e-6) * torch.randn(z.shape, generator=gen).to(z.device)
        offset = z.mean(0) if self.config.center else torch.zeros(self.dim, device=z.device)
        self.offset.copy_(offset)
        r = z - offset
        for level, (k, m) in enumerate(zip(self.radices, self.widths)):
            if self.kind == "dpca":
                v = _top_directions(r, m)
                getattr(self, f"basis_{level}").copy_(v)
            p = self._project(r, level)
            km = KMeansConfig(iters=self.config.init_kmeans_iters, init="quantile" if m == 1 else "kmeans++")
            c = kmeans(p.cpu(), k, km, gen).to(p.device)
            idx = _nearest_codeword(p, c)
            self.codebooks[level].data.copy_(c)
            share = torch.bincount(idx, minlength=k).float() / idx.numel()
            getattr(self, f"usage_{level}").copy_(share)
            if self.config.ema:
                getattr(self, f"ema_count_{level}").copy_(share)
                getattr(self, f"ema_sum_{level}").copy_(c * share[:, None])
            r = r - self._lift(c[idx], level)
        self.initialized.fill_(True)

    # ------------------------------------------------------------------ forward

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes ``int64 [B, L]`` of latents ``z [B, D]``."""
        return self._assign(z.detach().float())[0]

    @torch.no_grad()
    def _assign(self, z: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Greedy residual assignment: codes ``[B, L]`` and each level's projection ``[B, m_l]``.

        Same arithmetic as :meth:`DPCA.encode` (residual minus a row of ``T_l``), so the exported
        quantizer reproduces these codes bit for bit.
        """
        r = z - self.offset
        codes = torch.empty(z.shape[0], self.num_levels, dtype=torch.long, device=z.device)
        projections: List[torch.Tensor] = []
        for level in range(self.num_levels):
            c = self.codebooks[level].detach()
            p = self._project(r, level)
            idx = _nearest_codeword(p, c)
            projections.append(p)
            codes[:, level] = idx
            r = r - self._lift(c, level)[idx]
        return codes, projections

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``z_q [B, D] = offset + sum_l T_l[c_l]`` of codes ``[B, L]`` (differentiable in the codewords)."""
        out = self.offset.expand(codes.shape[0], -1)
        for level in range(self.num_levels):
            out = out + self._lift(self.codebooks[level][codes[:, level]], level)
        return out

    def forward(self, z: torch.Tensor) -> BottleneckOutput:
        """Quantizes ``z [B, D]``; in training mode also updates EMA codewords and restarts dead codes.

        Raises:
            RuntimeError: the bottleneck was never initialized (call :meth:`initialize`).
        """
        if not bool(self.initialized):
            raise RuntimeError("ResidualBottleneck is not initialized: call initialize(z_sample) first")
        zf = z.float()
        codes, projections = self._assign(zf.detach())
        z_q = self.decode(codes)
        commitment = F.mse_loss(zf, z_q.detach())
        codebook = zf.new_zeros(())
        if not self.config.ema:
            for level, p in enumerate(projections):
                codebook = codebook + F.mse_loss(self.codebooks[level][codes[:, level]], p)
        restarted = 0
        if self.training:
            restarted = self._update(projections, codes)
        z_hat = zf + (z_q - zf).detach()
        return BottleneckOutput(z_hat, z_q, codes, commitment, codebook, restarted)

    @torch.no_grad()
    def _update(self, projections: List[torch.Tensor], codes: torch.Tensor) -> int:
        cfg = self.config
        self.steps += 1
        check_dead = cfg.restart_dead and int(self.steps) % cfg.restart_every == 0
        restarted = 0
        b = codes.shape[0]
        for level, p in enumerate(projections):
            k = self.radices[level]
            idx = codes[:, level]
            share = torch.bincount(idx, minlength=k).float() / b
            usage = getattr(self, f"usage_{level}")
            usage.mul_(cfg.usage_decay).add_(share, alpha=1.0 - cfg.usage_decay)
            cb = self.codebooks[level]
            if cfg.ema:
                count = getattr(self, f"ema_count_{level}")
                total = getattr(self, f"ema_sum_{level}")
                sums = torch.zeros_like(total).index_add_(0, idx, p) / b
                count.mul_(cfg.ema_decay).add_(share, alpha=1.0 - cfg.ema_decay)
                total.mul_(cfg.ema_decay).add_(sums, alpha=1.0 - cfg.ema_decay)
                n = count.sum()
                smoothed = (count + cfg.ema_eps) / (n + k * cfg.ema_eps) * n
                cb.data.copy_(total / smoothed[:, None])
            if check_dead:
                dead = (usage < cfg.dead_threshold / k).nonzero().flatten()
                if dead.numel():
                    pick = torch.randint(p.shape[0], (int(dead.numel()),), device=p.device)
                    noise = 0.01 * p.std(0, keepdim=True).clamp_min(1e-6) * torch.randn(
                        int(dead.numel()), p.shape[1], device=p.device
                    )
                    cb.data[dead] = p[pick] + noise
                    usage[dead] = 1.0 / k
                    if cfg.ema:
                        getattr(self, f"ema_count_{level}")[dead] = 1.0 / k
                        getattr(self, f"ema_sum_{level}")[dead] = cb.data[dead] / k
                    restarted += int(dead.numel())
        return restarted

    # ------------------------------------------------------------------ export

    def to_quantizer(self) -> DPCA:
        """The frozen tables as a fitted :class:`~torchrec_side.quantizers.DPCA` over latents.

        RQ levels become DPCA levels of width ``m = D`` with the identity basis (DPCA with
        ``m_l = D`` is RQ). ``quantizer.encode(z)`` equals :meth:`encode` and
        ``quantizer.level_tables()`` equals :meth:`level_tables`.
        """
        levels = [DPCALevel(m=m, k=k) for k, m in zip(self.radices, self.widths)]
        q = DPCA(DPCAConfig(levels=levels))
        tensors: Dict[str, torch.Tensor] = {"offset": self.offset.detach().cpu().clone()}
        for level, (c, v) in enumerate(self.level_factors()):
            tensors[f"codewords.{level}"] = c.cpu()
            tensors[f"directions.{level}"] = v.cpu()
        q.load_state_dict(tensors)
        return q
