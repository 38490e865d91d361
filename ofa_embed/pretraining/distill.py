"""Pieces of self-distillation (DINO, iBOT): the projection head, the teacher's EMA and centring, the loss.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO, 2021, arXiv:2104.14294);
Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer" (2022, arXiv:2111.07832). The objective
that assembles them is :class:`~ofa_embed.pretraining.objective.DinoIBot`.

Shapes: features ``(..., D)`` -> head outputs ``(..., K)`` (K prototypes); teacher and student outputs of
matching rows are compared by :func:`distillation_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DinoHead", "distillation_loss", "ema_update", "teacher_momentum", "update_centre"]


class DinoHead(nn.Module):
    """DINO's projection head: a 3-layer GELU MLP to a bottleneck, L2-normalised, then cosine similarity to
    ``prototypes`` learned unit vectors.

    The prototypes are kept at unit norm in the forward (DINO's weight-normalised last layer with its gain
    frozen at 1, written out here instead of a weight-norm parametrisation): the logits are cosines, so
    the temperature alone sets how sharp a distribution is.

    Args:
        dim: input width D.
        hidden: hidden width of the MLP.
        bottleneck: width of the normalised bottleneck.
        prototypes: output width K.

    Shapes:
        ``(..., D)`` -> ``(..., K)``.
    """

    def __init__(self, dim: int, hidden: int, bottleneck: int, prototypes: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.empty(prototypes, bottleneck))
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D)`` -> ``(..., K)`` cosines between the normalised bottleneck and the prototypes."""
        z = F.normalize(self.mlp(x).float(), dim=-1)
        return z @ F.normalize(self.prototypes.float(), dim=-1).t()


def distillation_loss(teacher: Tensor, student: Tensor, centre: Tensor, teacher_temperature: float,
                      student_temperature: float) -> Tensor:
    """Cross-entropy from the centred, sharpened teacher distribution to the student's, mean over rows.

    Args:
        teacher: ``(N, K)`` teacher head outputs (no gradient flows into them).
        student: ``(N, K)`` student head outputs, row i the student's view of row i's content.
        centre: ``(1, K)`` running mean of teacher outputs, subtracted before the softmax (with the
            sharpening, what keeps the teacher from collapsing to one prototype or to uniform outputs).
        teacher_temperature: softmax temperature of the teacher (below the student's: sharpening).
        student_temperature: softmax temperature of the student.
    """
    targets = F.softmax((teacher.float() - centre) / teacher_temperature, dim=-1)
    return -(targets * F.log_softmax(student.float() / student_temperature, dim=-1)).sum(-1).mean()


@torch.no_grad()
def update_centre(centre: Tensor, teacher: Tensor, momentum: float) -> None:
    """``centre <- momentum * centre + (1 - momentum) * mean of teacher rows`` in place, averaged over ranks
    under DistributedDataParallel so every rank keeps the same centre.
    """
    batch = teacher.float().reshape(-1, teacher.shape[-1]).mean(0, keepdim=True)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(batch)
        batch /= dist.get_world_size()
    centre.mul_(momentum).add_(batch, alpha=1 - momentum)


def teacher_momentum(base: float, step: int, steps: int) -> float:
    """DINO's schedule: ``base`` at step 0 rising to 1 by a half cosine at ``steps``: the teacher follows the
    student closely early and settles at the end.
    """
    progress = min(step / max(steps, 1), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update(teacher: Iterable[Tensor], student: Iterable[Tensor], momentum: float) -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student``, tensor by tensor (same order)."""
    for t, s in zip(teacher, student, strict=True):
        t.lerp_(s.detach(), 1.0 - momentum)
