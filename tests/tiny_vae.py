"""A tiny random AutoencoderKL saved locally: what latent mode ([model] vae) runs on in tests."""
import torch
from diffusers import AutoencoderKL


def save_vae(folder, in_channels=3, blocks=2, seed=0, safetensors=True) -> str:
    """A tiny random AutoencoderKL (4 latent channels, side / 2 ** (blocks - 1)) saved with save_pretrained."""
    torch.manual_seed(seed)
    AutoencoderKL(in_channels=in_channels, out_channels=in_channels, block_out_channels=(8,) * blocks,
                  down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
                  latent_channels=4, norm_num_groups=4, sample_size=16
                  ).save_pretrained(folder, safe_serialization=safetensors)
    return str(folder)
