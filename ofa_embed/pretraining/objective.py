"""Pre-training objectives behind one interface, chosen by name (:data:`OBJECTIVES`, ``PretrainConfig.objective``).

An objective (:class:`Objective`) is a module built around the encoder whose forward is the loss of one
batch, the views of B tiles of one modality, and its parts by name (:attr:`Objective.log_keys`, the
columns of ``loss.csv``); its options are a dataclass of :mod:`ofa_embed.pretraining.config`
(:data:`~ofa_embed.pretraining.config.OBJECTIVE_OPTIONS`, the same names as :data:`OBJECTIVES`). The
training loop knows no more of it than that, and saves its ``state_dict`` to resume.

``masked_siamese`` (:class:`MaskedSiamese`, the default): MAE on every view, plus a contrastive term
between two views of a tile. ``dino_ibot`` (:class:`DinoIBot`): self-distillation from an EMA teacher over
multi-crop views, plus the teacher's features of masked tokens.

Masked reconstruction alone (He et al. 2022) trains tokens that rebuild pixels; nothing asks the pooled
embedding of a tile to be close to that of the same place seen differently, and that closeness is what
kNN and search use. So each tile is seen twice (two random crops of different sizes, flips and quarter
turns, each with its own random mask), and besides the MAE loss of each view, the mean-pooled embeddings
of the two masked views, through a small projector, are pulled together and pushed away from the other
tiles of the batch with a symmetric InfoNCE loss (van den Oord et al. 2018; the masked-siamese form of
MSN and CMAE). Augmentations are geometric only: in Earth observation the radiometry of a place is
signal, so the embedding is not taught to ignore it.

Reconstruction targets are the normalised pixels themselves by default (``norm_pix_loss=False``): MAE's
per-patch normalised targets discard each patch's absolute brightness and contrast, which is most of
what a band statistic knows.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ofa_embed.errors import ConfigError
from ofa_embed.model.mae import OFAMAE
from ofa_embed.model.ofa import OFANet
from ofa_embed.pretraining.config import DinoIBotOptions, MaskedSiameseOptions, ObjectiveOptions
from ofa_embed.pretraining.distill import DinoHead, distillation_loss, ema_update, teacher_momentum, update_centre
from ofa_embed.pretraining.views import crop_edges, draw_edge, keep_bands, random_crops
from ofa_embed.sensors.registry import MODALITIES

__all__ = ["OBJECTIVES", "DinoIBot", "MaskedSiamese", "Objective", "build_objective", "info_nce"]


class Objective(nn.Module, ABC):
    """A pre-training objective: the encoder plus whatever trains it (decoders, projectors), discarded after
    training except for the encoder.

    Subclasses set :attr:`log_keys` and :attr:`options_type` and implement :meth:`build`, :attr:`encoder` and
    :meth:`forward`.
    """

    #: the parts of the loss :meth:`forward` reports, in the order ``loss.csv`` has them as columns
    log_keys: ClassVar[tuple[str, ...]]
    #: the options dataclass of the objective (``OBJECTIVE_OPTIONS[name]``)
    options_type: ClassVar[type[ObjectiveOptions]]

    @classmethod
    @abstractmethod
    def build(cls, encoder: OFANet, options: ObjectiveOptions) -> Objective:
        """The objective around ``encoder`` with ``options`` (an instance of :attr:`options_type`)."""

    @property
    @abstractmethod
    def encoder(self) -> OFANet:
        """The backbone being pre-trained (what ``encoder.safetensors`` holds)."""

    @abstractmethod
    def forward(self, views: list[Tensor], modality: str,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """The loss of one batch: views ``[(B, C, S_v, S_v), ...]`` of the same B tiles of ``modality``.

        Returns:
            The scalar loss to minimise and its parts, keys among :attr:`log_keys` (a part the batch does
            not have is left out).
        """

    def after_step(self, step: int, steps: int) -> None:
        """Called by the loop after each optimiser step (``step`` of ``steps``, 1-based): state that follows
        the weights without a gradient (an EMA teacher) is updated here. Default: nothing.
        """


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between ``(B, E)`` projections: row i of ``a`` and of ``b`` are one tile's views."""
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    logits = a @ b.T / temperature
    targets = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


class MaskedSiamese(Objective):
    """``masked_siamese``: MAE around ``encoder`` with a projector for the contrastive term.

    Args:
        encoder: the backbone being pre-trained.
        mask_ratio: fraction of patches masked in every view.
        norm_pix_loss: MAE's per-patch normalised pixel targets (False: the normalised pixels).
        contrastive_weight: weight of the InfoNCE term (0: MAE only, one view is enough).
        temperature: InfoNCE temperature.
        projection_dim: width of the projector output.
    """

    log_keys = ("mae", "contrastive")
    options_type = MaskedSiameseOptions

    def __init__(self, encoder: OFANet, *, mask_ratio: float = 0.75, norm_pix_loss: bool = False,
                 contrastive_weight: float = 0.5, temperature: float = 0.2, projection_dim: int = 128) -> None:
        super().__init__()
        self.mae = OFAMAE(encoder, norm_pix_loss=norm_pix_loss)
        self.mask_ratio = mask_ratio
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        width = encoder.embedding_dim  # the pooled embedding's length
        self.projector = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, projection_dim))

    @classmethod
    def build(cls, encoder: OFANet, options: ObjectiveOptions) -> MaskedSiamese:
        """The objective around ``encoder`` with :class:`~ofa_embed.pretraining.config.MaskedSiameseOptions`."""
        if not isinstance(options, MaskedSiameseOptions):
            raise ConfigError(f"masked_siamese takes MaskedSiameseOptions, got {type(options).__name__}")
        return cls(encoder, mask_ratio=options.mask_ratio, norm_pix_loss=options.norm_pix_loss,
                   contrastive_weight=options.contrastive_weight, temperature=options.temperature)

    @property
    def encoder(self) -> OFANet:
        """The backbone."""
        return self.mae.encoder

    def forward(self, views: list[Tensor], modality: str,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Loss over views ``[(B, C, S_v, S_v), ...]`` of the same B tiles, each masked at :attr:`mask_ratio`.

        Returns:
            The total loss and its parts (``mae``: mean over views; ``contrastive``, when weighted and
            two or more views are given: InfoNCE of the first two views).
        """
        encoder = self.encoder
        reconstruction, pooled = [], []
        for images in views:
            grid = (images.shape[-2] // encoder.patch_size, images.shape[-1] // encoder.patch_size)
            encoded, mask, ids_restore = self.mae.forward_encoder(images, modality, self.mask_ratio, generator)
            prediction = self.mae.forward_decoder(encoded, ids_restore, grid, modality)
            reconstruction.append(self.mae.forward_loss(images, prediction, mask))
            pooled.append(encoder.pool(encoder.finish(encoded)))
        mae_loss = torch.stack(reconstruction).mean()
        parts = {"mae": float(mae_loss.detach())}
        if self.contrastive_weight <= 0 or len(views) < 2:
            return mae_loss, parts
        contrastive = info_nce(self.projector(pooled[0]), self.projector(pooled[1]), self.temperature)
        parts["contrastive"] = float(contrastive.detach())
        return mae_loss + self.contrastive_weight * contrastive, parts


class DinoIBot(Objective):
    """``dino_ibot``: a student encoder matches an EMA teacher across multi-crop views (DINO) and predicts the
    teacher's features of its masked tokens (iBOT).

    Why: masked reconstruction trains tokens that rebuild pixels, and a contrastive term between two views
    trains the pooled embedding against the batch's other tiles (few, on CPU). Self-distillation asks the
    pooled embedding of any crop (global 64-128 px, local 32-48 px) to predict the teacher's distribution
    over learned prototypes for the whole tile: what is the same across crops of one place is spatial
    structure and spectral character, which is what kNN and search use (DINO's features are kNN-ready);
    the masked-token term asks each token to infer its content from its neighbours, a spatial signal on
    every token rather than one per tile. Nothing needs negatives, so small batches work.

    Every step: the sampler's view of B tiles (the tile itself by default) is cut into
    ``global_crops`` global and ``local_crops`` local crops (:mod:`~ofa_embed.pretraining.views`). The
    teacher (a copy of the student whose weights are an exponential moving average of the student's, see
    :meth:`after_step`) embeds the global crops with all bands; the student embeds every crop, with band
    dropout, and with a random ``mask_ratio`` of the global crops' tokens replaced by a learned mask token.
    Both pool their tokens as the backbone does (``OFANet.pool``: what ``extract`` embeds) and project them
    with a DINO head; the loss is the cross-entropy from each global crop's centred, sharpened teacher
    distribution to the student's of every other crop (``dino``), plus, weighted, the same for the
    tokens the student saw masked against the teacher's tokens at those positions (``ibot``; the head is
    shared, the centre is the tokens' own), plus, weighted, MAE on the first global crop (``mae``).

    Each step holds tiles of one modality, so the centres (the running mean of the teacher's outputs that
    DINO subtracts against collapse) are kept per modality, one row each: a centre shared by every sensor
    would be the mean over sensors, and within one sensor's batch the teacher would then peak on whatever
    prototype that sensor leans to, the same for every tile (a collapse per sensor that the shared
    centre's entropy hides).

    The shipped encoder (:attr:`encoder`, ``encoder.safetensors``) is the teacher's backbone, as DINO
    ships its teacher: an average of the student over the last steps, a better and steadier encoder.
    The teacher's weights and both centres are part of :meth:`state_dict`, so ``state.pt`` resumes exactly.

    Args:
        encoder: the backbone to pre-train (the student; the teacher starts as its copy).
        options: :class:`~ofa_embed.pretraining.config.DinoIBotOptions`.

    Raises:
        ConfigError: band dropout without the spectral patch embedding, or crop ranges with no multiple of
            the patch size.
    """

    log_keys = ("dino", "ibot", "mae", "teacher_entropy")
    options_type = DinoIBotOptions
    centre: Tensor
    token_centre: Tensor

    def __init__(self, encoder: OFANet, options: DinoIBotOptions) -> None:
        super().__init__()
        if options.band_dropout > 0 and not encoder.wavelength_conditioned:
            raise ConfigError("band_dropout needs the spectral patch embedding (set it to 0)")
        if encoder.embedding_dim != encoder.embed_dim:
            # one head projects both pooled embeddings (DINO) and tokens (iBOT)
            raise ConfigError(f"dino_ibot needs an embedding as wide as a token; pooling {encoder.config.pooling!r} "
                              "is not: train with token_mean and choose the readout when shipping")
        for low, high in ((options.global_crop_min, options.global_crop_max), (options.local_crop_min, options.local_crop_max)):
            if high // encoder.patch_size * encoder.patch_size < low:
                raise ConfigError(f"crop edges [{low}, {high}] hold no multiple of the patch size {encoder.patch_size}")
        self.options = options
        self.student = encoder
        self.student_head = DinoHead(encoder.embed_dim, options.head_hidden, options.head_bottleneck, options.prototypes)
        # the teacher starts as the student and only moves by EMA: no gradient, no optimiser state
        self.teacher = copy.deepcopy(encoder).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.student_head).requires_grad_(False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        # one row per modality registered when the objective is built (state.pt holds them in this order)
        self.centre_rows = {name: row for row, name in enumerate(MODALITIES)}
        self.register_buffer("centre", torch.zeros(len(self.centre_rows), options.prototypes))
        self.register_buffer("token_centre", torch.zeros(len(self.centre_rows), options.prototypes))
        self.mae = OFAMAE(encoder, norm_pix_loss=False) if options.mae_weight > 0 else None

    @classmethod
    def build(cls, encoder: OFANet, options: ObjectiveOptions) -> DinoIBot:
        """The objective around ``encoder`` with :class:`~ofa_embed.pretraining.config.DinoIBotOptions`."""
        if not isinstance(options, DinoIBotOptions):
            raise ConfigError(f"dino_ibot takes DinoIBotOptions, got {type(options).__name__}")
        return cls(encoder, options)

    @property
    def encoder(self) -> OFANet:
        """The teacher's backbone: what training ships."""
        return self.teacher

    def _student_tokens(self, crops: Tensor, modality: str, mask: Tensor | None,
                        generator: torch.Generator | None) -> Tensor:
        """Final tokens ``(B, N, D)`` of the student on ``crops``, band dropout applied, ``mask`` ``(B, N)``
        tokens replaced by the mask token (at their position).
        """
        student, options = self.student, self.options
        kept = keep_bands(crops.shape[1], options.band_dropout, generator)
        bands = None if kept is None else [MODALITIES[modality].band_names[i] for i in kept]
        tokens = student.embed_tokens(crops if kept is None else crops[:, kept], modality, bands=bands)
        if mask is not None:
            grid = (crops.shape[-2] // student.patch_size, crops.shape[-1] // student.patch_size)
            masked = self.mask_token + student.pos_embed(*grid, tokens.device)
            tokens = torch.where(mask[..., None], masked.to(tokens.dtype), tokens)
        return student.finish(student.blocks(tokens))

    def forward(self, views: list[Tensor], modality: str,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Loss of one batch: ``views[0]`` ``(B, C, S, S)`` is cut into the multi-crop views.

        Returns:
            The total loss and its parts: ``dino``, ``ibot`` (when weighted and a token was masked),
            ``mae`` (when weighted), and ``teacher_entropy``, the entropy (nats) of the teacher's mean
            distribution over prototypes: a diagnostic, near 0 when the teacher collapses to one prototype.
        """
        options, tiles = self.options, views[0]
        size, patch = len(tiles), self.student.patch_size
        if modality not in self.centre_rows:
            raise ConfigError(f"modality {modality!r} was registered after the dino_ibot objective was built")
        row = self.centre_rows[modality]
        centre, token_centre = self.centre[row : row + 1], self.token_centre[row : row + 1]  # views: updated in place
        limit = min(tiles.shape[-2:])
        edge = draw_edge(crop_edges(options.global_crop_min, options.global_crop_max, patch, limit), generator)
        global_crops = torch.cat([random_crops(tiles, edge, options.scale_jitter, generator)
                                  for _ in range(options.global_crops)])
        with torch.no_grad():
            teacher_tokens = self.teacher.forward_features(global_crops, modality)
            teacher_out = self.teacher_head(self.teacher.pool(teacher_tokens))
        tokens = (edge // patch) ** 2
        mask = torch.rand(len(global_crops), tokens, device=tiles.device, generator=generator) < options.mask_ratio
        student_tokens = self._student_tokens(global_crops, modality, mask if options.ibot_weight > 0 else None, generator)
        student_out = [self.student_head(self.student.pool(student_tokens))]
        if options.local_crops:
            local_edge = draw_edge(crop_edges(options.local_crop_min, options.local_crop_max, patch, limit), generator)
            local_crops = torch.cat([random_crops(tiles, local_edge, options.scale_jitter, generator)
                                     for _ in range(options.local_crops)])
            student_out.append(self.student_head(self.student.pool(self._student_tokens(local_crops, modality, None, generator))))
        student_views = torch.cat(student_out).reshape(-1, size, options.prototypes)  # view-major: (V, B, K)
        teacher_views = teacher_out.reshape(-1, size, options.prototypes)
        terms = [distillation_loss(teacher_views[i], student_views[v], centre, options.teacher_temperature,
                                   options.student_temperature)
                 for i in range(len(teacher_views)) for v in range(len(student_views)) if v != i]
        # one global crop alone has no other view to match: it is matched to itself
        dino = torch.stack(terms).mean() if terms else distillation_loss(
            teacher_views[0], student_views[0], centre, options.teacher_temperature, options.student_temperature)
        loss, parts = dino, {"dino": float(dino.detach())}
        if options.ibot_weight > 0 and bool(mask.any()):
            with torch.no_grad():
                teacher_token_out = self.teacher_head(teacher_tokens[mask])
            ibot = distillation_loss(teacher_token_out, self.student_head(student_tokens[mask]), token_centre,
                                     options.teacher_temperature, options.student_temperature)
            loss = loss + options.ibot_weight * ibot
            parts["ibot"] = float(ibot.detach())
            update_centre(token_centre, teacher_token_out, options.centre_momentum)
        if self.mae is not None:
            mae, _, _ = self.mae(global_crops[:size], modality, 0.75, generator)
            loss = loss + options.mae_weight * mae
            parts["mae"] = float(mae.detach())
        mean = F.softmax((teacher_out.float() - centre) / options.teacher_temperature, dim=-1).mean(0)
        parts["teacher_entropy"] = float(-(mean * mean.clamp_min(1e-12).log()).sum())
        update_centre(centre, teacher_out, options.centre_momentum)
        return loss, parts

    def after_step(self, step: int, steps: int) -> None:
        """Move the teacher (backbone and head) towards the student by the momentum of step ``step``
        (:func:`~ofa_embed.pretraining.distill.teacher_momentum`).
        """
        momentum = teacher_momentum(self.options.teacher_momentum, step, steps)
        ema_update(list(self.teacher.parameters()) + list(self.teacher_head.parameters()),
                   list(self.student.parameters()) + list(self.student_head.parameters()), momentum)


# name -> objective; the same names as OBJECTIVE_OPTIONS in pretraining/config.py (torch-free, for the CLI)
OBJECTIVES: dict[str, type[Objective]] = {"masked_siamese": MaskedSiamese, "dino_ibot": DinoIBot}


def build_objective(name: str, encoder: OFANet, options: ObjectiveOptions) -> Objective:
    """The objective ``name`` of :data:`OBJECTIVES` around ``encoder``.

    Raises:
        ConfigError: an unknown name, or options of another objective.
    """
    if name not in OBJECTIVES:
        raise ConfigError(f"objective {name!r}: choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name].build(encoder, options)
