"""DOFA: the published wavelength-conditioned ViT, as a second backbone family behind ``--weights``.

Xiong et al., "Neural Plasticity-Inspired Multimodal Foundation Model for Earth Observation" (DOFA,
2024, arXiv:2403.15356), the OFA-Net authors' successor: a ViT whose patch embedding is generated from
the centre wavelength of each input band, pre-trained with MAE on SatlasPretrain, Five-Billion-Pixels
and HySpecNet-11k. The maths of the patch embedding is this project's
:class:`~ofa_embed.model.layers.SpectralPatchEmbed`; what makes a DOFA model DOFA, checked against
TorchGeo's implementation by ``tests/model/test_dofa.py``:

- wavelengths enter in µm, x1000, through a 128-d sin-cos computed in float32 (as trained);
- the generated kernel and bias are multiplied by 0.01; the convolution has padding 1;
- the 2-D sin-cos position embedding puts the column half first (MAE's reference code), with a zero
  code for the class token; tiles other than 224 px get the formula on their own grid;
- the embedding is ``fc_norm`` of the mean of the patch tokens; the released files carry no
  ``fc_norm``, so it stays at LayerNorm's defaults (weight 1, bias 0, eps 1e-6);
- a band is fed the wavelength the weights were trained with (:data:`TRAINING_WAVELENGTHS_UM`; the
  encoding is sensitive enough that 1 nm moves it visibly), the physical centre only for a band the
  weights never saw, and SAR the checkpoint's placeholder (3.75), not the 5.5 cm radar wavelength.

Layout of this file (timm/TorchGeo order): model, checkpoint adapter, weight definitions, builders.
The model knows nothing about files: :func:`adapt_published` works on a state dict;
``model/checkpoint.py`` reads, hashes and caches the ``.pth`` files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ofa_embed.errors import ConfigError, WeightsError
from ofa_embed.model.config import DOFA_CONFIGS, DOFAConfig
from ofa_embed.model.layers import LAYER_NORM_EPS, Block, SpectralPatchEmbed, sincos_pos_embed_2d
from ofa_embed.model.pooling import POOLING_DESCRIPTIONS, final_tokens, pool_tokens, pooled_dim
from ofa_embed.sensors.registry import MODALITIES

__all__ = ["DOFA", "PUBLISHED_WEIGHTS", "TRAINING_STATS", "TRAINING_WAVELENGTHS_UM", "PublishedWeights", "adapt_published",
           "create_dofa", "published_config"]

KERNEL_SCALE = 0.01
PADDING = 1


class DOFA(nn.Module):
    """DOFA encoder: spectral patch embedding, class token, ViT blocks, ``fc_norm`` on the token mean.

    Same backbone API as :class:`~ofa_embed.model.ofa.OFANet`: :meth:`forward_features` (patch tokens),
    :meth:`pool`, :meth:`forward`, with a registered modality or explicit band wavelengths.

    Shapes:
        input ``(B, C, H, W)``, H and W multiples of the patch size -> ``(B, D)``.
    """

    def __init__(self, config: DOFAConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_dim = config.embed_dim
        self.patch_size = config.patch_size
        self.patch_embed = SpectralPatchEmbed(
            config.embed_dim, config.patch_size, config.wave_dim, kernel_scale=KERNEL_SCALE, padding=PADDING,
            polarisation_codes=False, kernel_layout=config.kernel_layout, code_dtype=torch.float32,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.blocks = nn.Sequential(
            *[Block(config.embed_dim, config.num_heads, config.mlp_ratio, qkv_bias=True) for _ in range(config.depth)]
        )
        self.fc_norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self._pos_cache: dict[tuple[int, int, torch.device], Tensor] = {}

    @property
    def pooling(self) -> str:
        """How patch tokens become the embedding, in words (recorded in every store file)."""
        return POOLING_DESCRIPTIONS[self.config.pooling]

    @property
    def embedding_dim(self) -> int:
        """Length of the pooled embedding (:meth:`pool`; ``embed_dim`` is a token's)."""
        return pooled_dim(self.config.pooling, self.embed_dim)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Every registered modality: the patch embedding is generated from wavelengths."""
        return tuple(MODALITIES)

    def band_wavelengths(self, modality: str, bands: Sequence[str] | None = None) -> list[float]:
        """Wavelengths (µm) to feed for ``bands`` (default: all) of a registered modality: the training
        value where :attr:`DOFAConfig.band_wavelengths` has one, else the registry's physical centre.
        """
        table = self.config.band_wavelengths.get(modality, {})
        by_name = {b.name: b.wavelength_um for b in MODALITIES[modality].bands}
        return [float(table.get(name, by_name[name])) for name in (bands or list(by_name))]

    @property
    def wavelength_conditioned(self) -> bool:
        """Bands are inputs: a missing band is left out, not filled."""
        return True

    def unseen_bands(self, modality: str, bands: Sequence[str] | None = None) -> list[str]:
        """The bands among ``bands`` (default: all) the weights were not trained on: every band of a sensor
        outside :attr:`DOFAConfig.trained_modalities`, and a trained sensor's bands missing from its
        wavelength table (Sentinel-2 B01, B09, B10). A trained sensor without a table (hyperspectral) was
        trained at its physical wavelengths.
        """
        names = list(bands or MODALITIES[modality].band_names)
        if modality not in self.config.trained_modalities:
            return names
        table = self.config.band_wavelengths.get(modality)
        return [name for name in names if name not in table] if table else []

    def pos_embed(self, grid_h: int, grid_w: int, device: torch.device) -> Tensor:
        """``(1, grid_h * grid_w, D)`` position embedding of the patch tokens, cached per grid and device."""
        key = (grid_h, grid_w, device)
        if key not in self._pos_cache:
            table = sincos_pos_embed_2d(grid_h, grid_w, self.embed_dim, device=device, column_first=True)
            self._pos_cache[key] = table[None]
        return self._pos_cache[key]

    def embed_tokens(self, x: Tensor, modality: str | None, wavelengths_um: Tensor | None = None,
                     bands: Sequence[str] | None = None) -> Tensor:
        """Class token and patch tokens with positions, before the blocks: ``(B, 1 + N, D)``.

        Args:
            x: ``(B, C, H, W)`` normalised tiles.
            modality: registered modality of ``x`` (None with explicit ``wavelengths_um``).
            wavelengths_um: ``(C,)`` band wavelengths in µm, for a sensor the registry does not know.
            bands: names of the modality's bands in ``x`` (a subset, in ``x``'s order; default: all).
        """
        if wavelengths_um is None:
            if modality is None:
                raise ValueError("give a modality or the band wavelengths")
            wavelengths_um = torch.tensor(self.band_wavelengths(modality, bands), dtype=torch.float32)
        if x.ndim != 4 or x.shape[1] != len(wavelengths_um):
            raise ValueError(f"input {tuple(x.shape)} does not have the {len(wavelengths_um)} bands given")
        if x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
            raise ValueError(f"tile size {tuple(x.shape[-2:])} is not a multiple of patch size {self.patch_size}")
        # the wavelength code and the kernel in float32 whatever the autocast: bf16 rounds 665 nm to 664
        with torch.autocast(x.device.type, enabled=False):
            tokens, (gh, gw) = self.patch_embed(x.float(), wavelengths_um.float())
            tokens = tokens + self.pos_embed(gh, gw, tokens.device)
            cls = self.cls_token.expand(len(x), -1, -1)
            return torch.cat([cls, tokens], dim=1)

    def forward_features(self, x: Tensor, modality: str | None, wavelengths_um: Tensor | None = None,
                         bands: Sequence[str] | None = None) -> Tensor:
        """``(B, C, H, W)`` -> patch tokens ``(B, N, D)`` after the blocks, class token dropped; under DOFA's
        ``mean_norm`` pooling not normed (``fc_norm`` normalises the mean, in :meth:`pool`), under
        ``token_mean`` normed by ``fc_norm`` (:func:`~ofa_embed.model.pooling.final_tokens`).
        """
        encoded = self.blocks(self.embed_tokens(x, modality, wavelengths_um, bands))[:, 1:]
        return final_tokens(encoded, self.config.pooling, self.fc_norm)

    def pool(self, tokens: Tensor) -> Tensor:
        """``(B, N, D)`` patch tokens -> ``(B, D)``: under DOFA's ``mean_norm``, ``fc_norm`` of their mean
        (:func:`~ofa_embed.model.pooling.pool_tokens`).
        """
        return pool_tokens(tokens, self.config.pooling, self.fc_norm)

    def forward(self, x: Tensor, modality: str | None, wavelengths_um: Tensor | None = None,
                bands: Sequence[str] | None = None) -> Tensor:
        """``(B, C, H, W)`` -> embeddings ``(B, E)``, E = :attr:`embedding_dim`."""
        return self.pool(self.forward_features(x, modality, wavelengths_um, bands))


# --- checkpoint adapter -----------------------------------------------------------------------------------
# Keys a published file may carry that are not part of the encoder: MAE's mask token, the final norm of the
# class-token read-out (DOFA's embedding uses fc_norm instead), a projector and a classification head.
IGNORED_PREFIXES = ("mask_token", "norm.", "projector.", "head.")
# fc_norm is built at fine-tuning time: the released files do not have it and it stays at its defaults
OPTIONAL_KEYS = frozenset({"fc_norm.weight", "fc_norm.bias"})
# the stored table is DOFA's sin-cos formula; it is checked, then the formula is evaluated per grid
POS_EMBED_TOLERANCE = 1e-4


def _size_of(state: Mapping[str, Tensor], source: str) -> tuple[str, int]:
    """``(size name, patch size)`` from the tensors' shapes."""
    try:
        embed_dim = state["cls_token"].shape[-1]
        kernel_numel = state["patch_embed.weight_generator.fc_weight.weight"].shape[0]
    except KeyError as exc:
        raise WeightsError(f"{source}: not a DOFA state dict (no {exc.args[0]})") from None
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    patch_size = math.isqrt(kernel_numel // embed_dim)
    for name, config in DOFA_CONFIGS.items():
        if (config.embed_dim, config.depth) == (embed_dim, depth):
            return name, patch_size
    raise WeightsError(f"{source}: width {embed_dim} and depth {depth} match no DOFA size ({', '.join(DOFA_CONFIGS)})")


def adapt_published(state: Mapping[str, Tensor], kernel_layout: str, *, source: str = "weights",
                    source_sha256: str = "") -> tuple[DOFAConfig, dict[str, Tensor]]:
    """A published DOFA state dict -> this project's config and state dict (strict, float32).

    Keys under :data:`IGNORED_PREFIXES` are dropped, ``fc_norm`` may be absent (defaults), any other
    missing or unexpected key is an error; the stored ``pos_embed`` must be DOFA's formula.

    Raises:
        WeightsError: not a DOFA state dict, foreign keys, or a position table that is not DOFA's.
    """
    name, patch_size = _size_of(state, source)
    config = replace(published_config(name, kernel_layout), patch_size=patch_size, source_sha256=source_sha256)
    model = DOFA(config)
    expected = set(model.state_dict())
    kept = {k: v.float() for k, v in state.items() if not k.startswith(IGNORED_PREFIXES) and k != "pos_embed"}
    missing = sorted(expected - set(kept) - OPTIONAL_KEYS)
    unexpected = sorted(set(kept) - expected)
    if missing or unexpected:
        raise WeightsError(f"{source}: not a DOFA {name} state dict: missing {missing[:3]}, unexpected {unexpected[:3]}"
                           f" (ignored by design: {', '.join(IGNORED_PREFIXES)}*)")
    if "pos_embed" in state:
        _check_positions(state["pos_embed"].float(), model, source)
    defaults = {k: v for k, v in model.state_dict().items() if k in OPTIONAL_KEYS}
    return config, defaults | kept


def _check_positions(stored: Tensor, model: DOFA, source: str) -> None:
    grid = math.isqrt(stored.shape[1] - 1)
    formula = torch.cat([torch.zeros(1, model.embed_dim), model.pos_embed(grid, grid, torch.device("cpu"))[0]])
    gap = (stored[0] - formula).abs().max().item()
    if gap > POS_EMBED_TOLERANCE:
        raise WeightsError(f"{source}: its pos_embed is not DOFA's fixed sin-cos embedding (max difference "
                           f"{gap:.2g}); these weights need their own position table, which ofa-embed does not load")


# --- weight definitions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublishedWeights:
    """A released DOFA file, recognised by the SHA-256 prefix in its name (torchvision's convention).

    Attributes:
        model: size name in :data:`DOFA_CONFIGS`.
        filename: the released file name.
        url: where to download it.
        kernel_layout: the layout of its generated kernels.
    """

    model: str
    filename: str
    url: str
    kernel_layout: str


_TORCHGEO_DOFA = "https://hf.co/torchgeo/dofa/resolve/b8db318b64a90b9e085ec04ba8851233c5893666/"
PUBLISHED_WEIGHTS: dict[str, PublishedWeights] = {
    "a0275954": PublishedWeights("dofa_base", "dofa_base_patch16_224-a0275954.pth",
                                 _TORCHGEO_DOFA + "dofa_base_patch16_224-a0275954.pth", "bands_first"),
    "0ff904d3": PublishedWeights("dofa_large", "dofa_large_patch16_224-0ff904d3.pth",
                                 _TORCHGEO_DOFA + "dofa_large_patch16_224-0ff904d3.pth", "bands_first"),
}

# Wavelengths (µm) DOFA was trained and evaluated with, per registered modality and band: these, not the
# sensors' physical centres, are what the weights know. Sources in the README's DOFA section.
# Sentinel-2: the 9 bands of DOFA's pre-training (zhu-xlab/DOFA README, demo and normalize_dataset.py); B01,
# B8A, B09 and B10 were never seen. These are rounded table centres, up to 12 nm from the registry's (B12).
_S2_TRAINING = {"B02": 0.49, "B03": 0.56, "B04": 0.665, "B05": 0.705, "B06": 0.74, "B07": 0.783, "B08": 0.842,
                "B11": 1.61, "B12": 2.19}
_RGBN_TRAINING = {"red": 0.665, "green": 0.56, "blue": 0.49, "nir": 0.842}
# SAR: one placeholder for both polarisations, not the 5.5 cm radar wavelength. TorchGeo-based benchmarks
# (PANGAEA) feed 3.75; DOFA's own README feeds 5.405 (the C-band frequency in GHz). 3.75 is kept for the
# TorchGeo files; --wavelengths overrides it.
_S1_TRAINING = {"VV": 3.75, "VH": 3.75}
TRAINING_WAVELENGTHS_UM: dict[str, dict[str, float]] = {
    "sentinel2_l1c": _S2_TRAINING,
    "sentinel2_l2a": _S2_TRAINING,
    "sentinel2_9band": _S2_TRAINING,
    "sentinel1_grd": _S1_TRAINING,
    "rgbn": _RGBN_TRAINING,
    "rgb": {k: v for k, v in _RGBN_TRAINING.items() if k != "nir"},
}
# Normalisation DOFA documents in a form that maps onto this registry's units: its NAIP/RGB statistics are
# ImageNet's on 8-bit values (mean/std per band of value/255 here). Its Sentinel-1/-2 statistics are for 8-bit
# renderings whose mapping from dB / reflectance is not documented, so those sensors keep the registry's.
_IMAGENET_RGB = {"red": (0.485, 0.229), "green": (0.456, 0.224), "blue": (0.406, 0.225)}
TRAINING_STATS: dict[str, dict[str, tuple[float, float]]] = {"rgb": _IMAGENET_RGB, "rgbn": _IMAGENET_RGB}
TRAINED_MODALITIES = ("sentinel2_l1c", "sentinel2_l2a", "sentinel2_9band", "sentinel1_grd", "rgbn", "rgb",
                      "hyperspectral")


# --- builders ---------------------------------------------------------------------------------------------
def published_config(name: str, kernel_layout: str = "bands_first") -> DOFAConfig:
    """The config of DOFA size ``name`` with the released weights' wavelength table.

    Raises:
        ConfigError: unknown size.
    """
    if name not in DOFA_CONFIGS:
        raise ConfigError(f"unknown DOFA model {name!r}; choose one of: {', '.join(DOFA_CONFIGS)}")
    return replace(DOFA_CONFIGS[name], kernel_layout=kernel_layout, band_wavelengths=TRAINING_WAVELENGTHS_UM,
                   band_stats={m: {b: list(v) for b, v in t.items()} for m, t in TRAINING_STATS.items()},
                   trained_modalities=TRAINED_MODALITIES)


def create_dofa(config: str | DOFAConfig = "dofa_base", *, seed: int = 0) -> DOFA:
    """A DOFA model of size ``config`` (or a full :class:`DOFAConfig`), seeded, in TorchGeo's init.

    Raises:
        ConfigError: unknown size.
    """
    if isinstance(config, str):
        config = published_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DOFA(config)
        generator = model.patch_embed
        for module in [*generator.weight_generator.modules(), *generator.fclayer.modules()]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.constant_(module.bias, 0.01)
        return model
