"""Layers of the OFA backbone: patch embeddings (per modality, or wavelength-conditioned), sin-cos codes, ViT block.

The block is the pre-norm ViT block (Dosovitskiy et al. 2021) with timm's parameter names
(``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``), so checkpoints are
interchangeable with timm's ``vision_transformer.Block``; it is written here in plain torch because
importing timm's model zoo pulls in torchvision, a slow import on every command that embeds, and so
that the LayerNorm epsilon is fixed by this code, not by the installed timm (1.0.16 changed its default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GENERATOR_LAYER_NORM_EPS", "KERNEL_LAYOUTS", "LAYER_NORM_EPS", "POLARISATIONS", "Attention", "Block", "ConvStem",
           "Mlp", "PatchEmbed", "SpectralPatchEmbed", "patch_projection", "sincos_1d", "sincos_pos_embed_2d"]

# every LayerNorm of the backbone (blocks and final norm), as in MAE and the shipped checkpoint's training
LAYER_NORM_EPS = 1e-6
# the spectral kernel generator's Transformer layer: torch's default, which DOFA's released weights use
GENERATOR_LAYER_NORM_EPS = 1e-5


def patch_projection(x: Tensor, kernel: Tensor, bias: Tensor | None, padding: int = 0) -> tuple[Tensor, tuple[int, int]]:
    """The convolution of ``x`` with ``kernel`` at a stride of its own size: ``(B, C, H, W)`` and ``(D, C, P, P)``
    (and ``(D,)`` bias) -> ``(B, H/P * W/P, D)`` tokens, row-major, and the token grid.

    Without padding the patches tile the input, and the convolution is one matrix product of the patches
    laid out as rows: on CPU that product is cheaper than torch's (oneDNN) convolution for these shapes
    (many bands, a kernel as large as its stride), in float32 and in bfloat16.
    """
    if padding:
        out = F.conv2d(x, kernel, bias, stride=kernel.shape[-1], padding=padding)
        return out.flatten(2).transpose(1, 2), (out.shape[-2], out.shape[-1])
    size, channels, height, width = x.shape
    dim, p = kernel.shape[0], kernel.shape[-1]
    grid = (height // p, width // p)
    patches = x.reshape(size, channels, grid[0], p, grid[1], p).permute(0, 2, 4, 1, 3, 5).reshape(-1, channels * p * p)
    weight = kernel.reshape(dim, -1).t()
    tokens = patches @ weight if bias is None else torch.addmm(bias, patches, weight)
    return tokens.reshape(size, grid[0] * grid[1], dim), grid


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding for one modality.

    Args:
        in_chans: number of bands of the modality.
        embed_dim: token width D.
        patch_size: patch edge P in pixels.

    Shapes:
        input ``(B, in_chans, H, W)`` with H, W multiples of P -> output ``(B, H/P * W/P, D)`` and the
        token grid ``(H/P, W/P)``.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``(B, in_chans, H, W)`` -> ``(B, H/P * W/P, D)`` tokens, row-major, and the grid ``(H/P, W/P)``."""
        return patch_projection(x, self.proj.weight, self.proj.bias)


def sincos_1d(positions: Tensor, dim: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Sine-cosine code of scalar positions (Vaswani et al. 2017; MAE's 1-D embedding).

    ``dim/2`` frequencies ``omega_k = 1 / 10000^(k / (dim/2))``.

    Args:
        positions: ``(N,)`` positions (any real values).
        dim: code width, even.
        dtype: precision of the arithmetic. The result is always float32, but at positions in the
            thousands (wavelengths in nm) float32 and float64 arithmetic differ by ~1e-4: a model is
            evaluated in the precision it was trained with (this project: float64; DOFA: float32).

    Returns:
        ``(N, dim)``: ``[sin(p * omega), cos(p * omega)]``.
    """
    if dim % 2:
        raise ValueError(f"sin-cos code width must be even, got {dim}")
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=dtype, device=positions.device) / half)
    angles = positions.reshape(-1, 1).to(dtype) * omega.reshape(1, -1)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_pos_embed_2d(grid_h: int, grid_w: int, dim: int, *, device: torch.device | None = None,
                        column_first: bool = False) -> Tensor:
    """Fixed 2-D sine-cosine position embedding (MAE), defined for any grid size.

    The first half of the channels encodes the row, the second half the column, each with
    :func:`sincos_1d` of width ``dim/2``; ``column_first`` swaps the halves, as MAE's reference code
    (and so DOFA's released weights) does through its ``meshgrid(w, h)``.

    Returns:
        ``(grid_h * grid_w, dim)`` float32, row-major over the grid.
    """
    if dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for 2-D sin-cos embedding, got {dim}")
    rows = torch.arange(grid_h, dtype=torch.float64, device=device)
    cols = torch.arange(grid_w, dtype=torch.float64, device=device)
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    halves = [sincos_1d(rr.reshape(-1), dim // 2), sincos_1d(cc.reshape(-1), dim // 2)]
    return torch.cat(halves[::-1] if column_first else halves, dim=1)


# how a generated kernel vector is laid out (see SpectralPatchEmbed)
KERNEL_LAYOUTS = ("bands_first", "legacy")

# SAR bands share one radar wavelength: the polarisation tells them apart (0 = optical, no code)
POLARISATIONS = {"VV": 1, "VH": 2, "HH": 3, "HV": 4}


class _ResidualMlp(nn.Module):
    """``x + relu(w2(relu(w1(x))))`` on ``(..., dim)``: refines the wavelength code before the generator."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., dim)`` -> ``(..., dim)``."""
        return x + F.relu(self.w2(F.relu(self.w1(x))))


class _KernelGenerator(nn.Module):
    """Band codes -> one patch kernel per band and a shared bias, through one Transformer layer.

    The sequence is ``[learned weight tokens, band codes, bias token]``: the layer lets each band's kernel
    depend on the other bands present. Band outputs (plus their own code) become kernels through
    ``fc_weight``, the bias token becomes the bias through ``fc_bias``.
    """

    def __init__(self, wave_dim: int, kernel_numel: int, embed_dim: int, num_weight_tokens: int = 128,
                 num_heads: int = 4) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(wave_dim, num_heads, dim_feedforward=2048, dropout=0.0, activation="gelu",
                                           layer_norm_eps=GENERATOR_LAYER_NORM_EPS, norm_first=False, batch_first=False)
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fc_weight = nn.Linear(wave_dim, kernel_numel)
        self.fc_bias = nn.Linear(wave_dim, embed_dim)
        self.weight_tokens = nn.Parameter(torch.empty(num_weight_tokens, wave_dim))
        self.bias_token = nn.Parameter(torch.empty(1, wave_dim))
        nn.init.normal_(self.weight_tokens, std=0.02)
        nn.init.normal_(self.bias_token, std=0.02)

    def forward(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """``(C, wave_dim)`` band codes -> ``(C, kernel_numel)`` kernels and ``(embed_dim,)`` bias."""
        sequence = torch.cat([self.weight_tokens, codes, self.bias_token], dim=0)[:, None]  # (S, 1, wave_dim)
        out = self.transformer_encoder(sequence)[:, 0]
        n = len(self.weight_tokens)
        return self.fc_weight(out[n:-1] + codes), self.fc_bias(out[-1])


class SpectralPatchEmbed(nn.Module):
    """Wavelength-conditioned patch embedding: one module for every sensor (DOFA's dynamic patch embedding).

    Xiong et al., "Neural Plasticity-Inspired Multimodal Foundation Model for Earth Observation"
    (DOFA, 2024, arXiv:2403.15356). Each band's centre wavelength (µm, taken x1000, i.e. in nm) gets a
    :func:`sincos_1d` code of width ``wave_dim``, refined by a residual MLP (plus a learned polarisation
    code for SAR bands, which share one wavelength); a one-layer Transformer over the bands present turns
    the codes into one ``P x P`` kernel per band and a bias, both multiplied by ``kernel_scale``; the
    tokens are the strided convolution of the tile with that kernel stack. Bands are inputs, not weights:
    any subset, any order and any sensor with known wavelengths is valid, and a band filled with zeros
    contributes nothing but the bias.

    Args:
        embed_dim: token width D.
        patch_size: patch edge P in pixels.
        wave_dim: width of the wavelength code.
        kernel_scale: factor on the generated kernel and bias (DOFA: 0.01).
        padding: zero padding of the convolution (DOFA: 1; this project's backbone: 0, so patches tile
            the input exactly).
        polarisation_codes: learn a code per SAR polarisation (:data:`POLARISATIONS`); DOFA has none.
        kernel_layout: how each band's generated vector becomes its kernel: ``bands_first`` reads it as
            ``(P, P, D)`` (DOFA as fixed upstream, and TorchGeo's released weights); ``legacy`` reads the
            whole ``(C, P*P*D)`` output as ``(D, C, P, P)``, as DOFA's first release did. Both give the
            same shapes, so weights loaded with the wrong one run "fine" and embed wrongly.
        code_dtype: arithmetic of the wavelength code (see :func:`sincos_1d`).

    Shapes:
        input ``(B, C, H, W)`` and ``(C,)`` wavelengths -> ``(B, N, D)`` tokens and the grid.
    """

    def __init__(self, embed_dim: int, patch_size: int, wave_dim: int = 128, *, kernel_scale: float = 0.01,
                 padding: int = 0, polarisation_codes: bool = True, kernel_layout: str = "bands_first",
                 code_dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if kernel_layout not in KERNEL_LAYOUTS:
            raise ValueError(f"kernel_layout {kernel_layout!r}: choose one of {', '.join(KERNEL_LAYOUTS)}")
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.wave_dim = wave_dim
        self.kernel_scale = kernel_scale
        self.padding = padding
        self.kernel_layout = kernel_layout
        self.code_dtype = code_dtype
        self.fclayer = _ResidualMlp(wave_dim)
        self.weight_generator = _KernelGenerator(wave_dim, patch_size * patch_size * embed_dim, embed_dim)
        self.polarisation = nn.Embedding(len(POLARISATIONS) + 1, wave_dim, padding_idx=0) if polarisation_codes else None
        if self.polarisation is not None:
            nn.init.normal_(self.polarisation.weight[1:], std=0.02)

    def band_codes(self, wavelengths_um: Tensor, polarisations: Tensor | None = None) -> Tensor:
        """``(C,)`` wavelengths in µm (and ``(C,)`` indices into :data:`POLARISATIONS`, 0 = optical)
        -> ``(C, wave_dim)`` codes.
        """
        codes = sincos_1d(wavelengths_um * 1000, self.wave_dim, self.code_dtype)
        if self.polarisation is not None and polarisations is not None:
            codes = codes + self.polarisation(polarisations)
        return self.fclayer(codes)

    def kernels(self, wavelengths_um: Tensor, polarisations: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The generated convolution: ``(D, C, P, P)`` kernel and ``(D,)`` bias, scaled."""
        weight, bias = self.weight_generator(self.band_codes(wavelengths_um, polarisations))
        p = self.patch_size
        if self.kernel_layout == "bands_first":
            kernel = weight.reshape(-1, p, p, self.embed_dim).permute(3, 0, 1, 2)
        else:
            kernel = weight.reshape(self.embed_dim, -1, p, p)
        return kernel * self.kernel_scale, bias * self.kernel_scale

    def forward(self, x: Tensor, wavelengths_um: Tensor,
                polarisations: Tensor | None = None) -> tuple[Tensor, tuple[int, int]]:
        """``(B, C, H, W)`` -> ``(B, N, D)`` tokens, row-major, and the token grid."""
        if wavelengths_um.shape != (x.shape[1],):
            raise ValueError(f"{x.shape[1]} bands need {x.shape[1]} wavelengths, got shape {tuple(wavelengths_um.shape)}")
        kernel, bias = self.kernels(wavelengths_um.to(x.device), None if polarisations is None else polarisations.to(x.device))
        return patch_projection(x, kernel.to(x.dtype), bias.to(x.dtype), self.padding)


class ConvStem(nn.Module):
    """Overlapping strided convolutions from a fine token grid to the patch grid (the "early convolutions" of
    Xiao et al. 2021, arXiv:2106.14881), after a spectral embedding of small cells.

    Each of ``log2(factor)`` stages is a 3 x 3 convolution of stride 2 and padding 1, so neighbouring
    output tokens see overlapping pixels (a ViT's patchify stem sees none of its neighbours'), followed by
    GELU except after the last; channels double per stage and the last stage gives ``out_dim``. No
    normalisation: a per-sample or per-pixel norm here would remove the absolute radiometry that the
    spectral embedding just encoded (the blocks' pre-norms act on each token later).

    Args:
        in_dim: channels of the fine grid (the spectral embedding's width).
        out_dim: token width D.
        factor: ratio of the fine grid's cell to the patch, a power of two >= 2.

    Shapes:
        ``(B, h * w, in_dim)`` tokens, row-major on the ``(h, w)`` grid -> ``(B, h/f * w/f, out_dim)`` and
        the grid ``(h/f, w/f)``.
    """

    def __init__(self, in_dim: int, out_dim: int, factor: int) -> None:
        super().__init__()
        stages = factor.bit_length() - 1
        if factor < 2 or factor != 1 << stages:
            raise ValueError(f"stem factor must be a power of two >= 2, got {factor}")
        widths = [in_dim * 2**i for i in range(stages)] + [out_dim]
        layers: list[nn.Module] = []
        for i in range(stages):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1))
            if i < stages - 1:
                layers.append(nn.GELU())
        self.convs = nn.Sequential(*layers)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
        """Fine tokens ``(B, h * w, C)`` on ``grid`` -> patch tokens ``(B, N, D)`` and the patch grid."""
        b, _, c = tokens.shape
        out = self.convs(tokens.transpose(1, 2).reshape(b, c, *grid))
        return out.flatten(2).transpose(1, 2), (out.shape[-2], out.shape[-1])


class Attention(nn.Module):
    """Multi-head self-attention: ``(B, N, D)`` -> ``(B, N, D)``.

    Args:
        dim: token width D, divisible by ``num_heads``.
        num_heads: attention heads.
        qkv_bias: biases on the query/key/value projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Scaled dot-product attention over all tokens (no mask): ``(B, N, D)`` -> ``(B, N, D)``."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu" and torch.is_grad_enabled():
            # training under CPU bf16 autocast: torch's bf16 flash-attention backward on CPU is several times
            # slower than its float32 one (benchmarks/pretrain_profile.py --profile), so attention runs in
            # float32 there (out of autocast, which would cast it back); the projections around it stay bf16.
            # Inference keeps the bf16 kernel.
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Two-layer GELU MLP: ``(..., D)`` -> ``(..., D)`` through ``hidden`` units."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``fc2(gelu(fc1(x)))``: ``(..., D)`` -> ``(..., D)``."""
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; ``(B, N, D)`` in and out.

    Args:
        dim: token width D.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width relative to D.
        qkv_bias: biases on the query/key/value projection.
        eps: LayerNorm epsilon (explicit: it changes the embeddings).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """The block on ``(B, N, D)`` tokens; same shape out."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
