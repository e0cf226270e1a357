"""The shared denoiser backbone: a class-conditional diffusers UNet2DConditionModel.

The condition is cross-attention tokens (B, L, cross_attention_dim); methods decide what the
tokens are (a class embedding, an SSL embedding, a null token). The tokens enter twice: through
cross-attention, and (condition path "attention+time", the default) mean-pooled and projected,
added to the timestep embedding (ADM-style, so every ResNet block sees the condition; what it bought
is in the README, "What the methods' settings rest on"). "attention" keeps cross-attention only (the
Stable Diffusion layout).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # diffusers is imported where a U-Net is built: reading a config must not pay for it
    from diffusers import UNet2DConditionModel

CONDITION_PATHS = {  # [model] condition_path -> where the condition tokens enter, as the report says it
    "attention+time": "cross-attention, and mean-pooled into the time embedding (ADM-style)",
    "attention": "cross-attention only",
}
ConditionPath = Literal[tuple(CONDITION_PATHS)]  # type: ignore[valid-type]


@dataclass(frozen=True)
class UNetSize:
    block_out_channels: tuple[int, ...]
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    layers_per_block: int
    cross_attention_dim: int
    attention_head_dim: int
    norm_num_groups: int


# Cross-attention only at the coarsest resolutions: that is where a global class token matters and
# where attention is cheap.
SIZES = {
    "tiny": UNetSize((16, 32), ("DownBlock2D", "CrossAttnDownBlock2D"),
                     ("CrossAttnUpBlock2D", "UpBlock2D"), 1, 32, 8, 8),
    "small": UNetSize((32, 64, 64), ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
                      ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), 1, 64, 16, 16),
    "paper": UNetSize((64, 128, 256, 256),
                      ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                      ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), 2, 256, 32, 32),
}


def build_unet(size: str, channels: int, image_size: int, condition_path: ConditionPath) -> UNet2DConditionModel:
    from diffusers import UNet2DConditionModel
    spec = SIZES[size]
    time_path = condition_path == "attention+time"
    return UNet2DConditionModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=spec.block_out_channels,
        down_block_types=spec.down_block_types,
        up_block_types=spec.up_block_types,
        mid_block_type="UNetMidBlock2DCrossAttn",
        layers_per_block=spec.layers_per_block,
        cross_attention_dim=spec.cross_attention_dim,
        attention_head_dim=spec.attention_head_dim,
        norm_num_groups=spec.norm_num_groups,
        class_embed_type="projection" if time_path else None,
        projection_class_embeddings_input_dim=spec.cross_attention_dim if time_path else None,
    )


def unet_forward(unet: UNet2DConditionModel, xt, t, cond):
    """eps_theta(x_t, t, cond): the one place the U-Net is called with a condition."""
    pooled = cond.mean(1) if unet.config.class_embed_type is not None else None  # the time-embedding path
    return unet(xt, t, encoder_hidden_states=cond, class_labels=pooled).sample
