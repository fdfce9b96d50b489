"""SAM's ViT image encoder: windowed and global attention with a decomposed relative position bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import SamConfig
from semsam.modeling.common import LayerNorm2d


def relative_positions(rel_pos: Tensor, size: int) -> Tensor:
    """The learned embedding of every (query, key) offset along one axis: [size, size, head_dim]."""
    if rel_pos.shape[0] != 2 * size - 1:
        rel_pos = F.interpolate(rel_pos.T[None], size=2 * size - 1, mode="linear")[0].T
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + size - 1]


MASK_CHUNK_BYTES = 64 << 20


def _heads_per_chunk(num_heads: int, bytes_per_head: int) -> int:
    """The largest divisor of num_heads whose attention masks fit in MASK_CHUNK_BYTES (at least 1)."""
    fitting = max(1, MASK_CHUNK_BYTES // bytes_per_head)
    return max(d for d in range(1, num_heads + 1) if num_heads % d == 0 and d <= fitting)


class Attention(nn.Module):
    """Multi-head self-attention over a [B, H, W, C] grid with SDPA; the rel-pos bias becomes its attn_mask."""

    def __init__(self, *, dim: int, num_heads: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: Tensor) -> Tensor:
        """Attention from projected [B, H, W, 3C] queries, keys and values to [B, H, W, C], before `proj`."""
        batch, height, width, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3] // 3
        tokens = height * width
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        grid_q = q.reshape(batch, self.num_heads, height, width, -1)
        # bias[q, k] = q . Rh[qh, kh] + q . Rw[qw, kw], added to the scaled dot product (unscaled q, as trained).
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, relative_positions(self.rel_pos_h, height)).contiguous()
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, relative_positions(self.rel_pos_w, width)).contiguous()
        out = q.new_empty(batch, tokens, self.num_heads, q.shape[-1])
        # A few heads at a time into one reused mask: a fresh [heads, tokens, tokens] mask per block costs more in
        # page faults than the attention itself at 64x64 tokens; small windows take all heads in one call.
        chunk = _heads_per_chunk(self.num_heads, batch * tokens * tokens * q.element_size())
        bias = q.new_empty(batch, chunk, height, width, height, width)
        for start in range(0, self.num_heads, chunk):
            heads = slice(start, start + chunk)
            torch.add(rel_h[:, heads, ..., None], rel_w[:, heads, ..., None, :], out=bias)
            out[:, :, heads] = F.scaled_dot_product_attention(
                q[:, heads], k[:, heads], v[:, heads], attn_mask=bias.view(batch, chunk, tokens, tokens)
            ).transpose(1, 2)
        return out.view(batch, height, width, dim)


class MLPBlock(nn.Module):
    def __init__(self, *, dim: int, hidden_dim: int, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden_dim)
        self.lin2 = nn.Linear(hidden_dim, dim)
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; attention runs in non-overlapping windows unless `window_size` is 0."""

    def __init__(self, *, dim: int, num_heads: int, window_size: int, grid_size: int) -> None:
        super().__init__()
        self.window_size = window_size
        size = window_size if window_size else grid_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim=dim, num_heads=num_heads, input_size=(size, size))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim=dim, hidden_dim=4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        if self.window_size:
            x = x + self._windowed_attention(self.norm1(x))
        else:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def _windowed_attention(self, y: Tensor) -> Tensor:
        """Attention inside non-overlapping windows of the grid, padded bottom/right to whole windows.

        Projecting before padding is exact (a zero-padded token projects to the qkv bias) and spares the
        linear layers the padding tokens.
        """
        batch, height, width, dim = y.shape
        w = self.window_size
        qkv = self.attn.qkv(y)
        rows, cols = -(-height // w), -(-width // w)
        if (rows * w, cols * w) != (height, width):
            padded = self.attn.qkv.bias.expand(batch, rows * w, cols * w, -1).clone()
            padded[:, :height, :width] = qkv
            qkv = padded
        windows = qkv.view(batch, rows, w, cols, w, -1).transpose(2, 3).reshape(-1, w, w, qkv.shape[-1])
        out = self.attn.attend(windows)
        out = out.view(batch, rows, cols, w, w, dim).transpose(2, 3).reshape(batch, rows * w, cols * w, dim)
        return self.attn.proj(out[:, :height, :width])


class PatchEmbed(nn.Module):
    def __init__(self, *, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """[B, 3, S, S] pre-processed images -> [B, 256, S/16, S/16] image embeddings."""

    def __init__(self, *, config: SamConfig) -> None:
        super().__init__()
        dim, grid = config.encoder_embed_dim, config.image_size // config.patch_size
        self.patch_embed = PatchEmbed(patch_size=config.patch_size, embed_dim=dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        self.blocks = nn.ModuleList(
            Block(dim=dim, num_heads=config.encoder_num_heads, grid_size=grid,
                  window_size=0 if i in config.global_attn_indexes else config.window_size)
            for i in range(config.encoder_depth)
        )
        out = config.prompt_embed_dim
        self.neck = nn.Sequential(
            nn.Conv2d(dim, out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
