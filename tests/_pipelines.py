"""Tiny random diffusers pipelines, built from configs and saved with save_pretrained, for tests.

The folders have the layout a user's Stable Diffusion-style pipeline has (model_index.json, unet/,
text_encoder/, tokenizer/, scheduler/, vae/), only with a few thousand parameters. Nothing is
downloaded: the CLIP tokenizer's vocabulary (bytes, no merges) is written here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TEXT_DIM = 32
TEXT_LENGTH = 24


def _byte_vocab() -> dict[str, int]:
    # CLIP's byte-to-unicode table: every byte a printable character, so any text tokenizes.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def tiny_tokenizer(folder: Path):
    """A CLIPTokenizer over single bytes (no merges), saved in ``folder``."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(_byte_vocab()))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         model_max_length=TEXT_LENGTH, pad_token="<|endoftext|>")


def tiny_text_encoder(seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(_byte_vocab()), hidden_size=TEXT_DIM, intermediate_size=48,
                            num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=TEXT_LENGTH, bos_token_id=512, eos_token_id=513,
                            pad_token_id=513)
    return CLIPTextModel(config).eval()


def tiny_unet(sample_size: int, channels: int, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(8, 16),
        layers_per_block=1, cross_attention_dim=TEXT_DIM, attention_head_dim=2, norm_num_groups=4)


def latent_pipeline(path: Path, *, prediction_type: str = "epsilon", resolution: int = 16,
                    seed: int = 0) -> Path:
    """A Stable Diffusion pipeline (VAE ×2 downsampling, 4 latent channels) saved at ``path``."""
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline

    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                        block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
                        sample_size=resolution)
    schedule = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                    prediction_type=prediction_type)
    # Stable Diffusion 1.x ships PNDM; v-prediction models (SD 2.x) ship DDIM.
    scheduler = (PNDMScheduler(skip_prk_steps=True, steps_offset=1, **schedule) if prediction_type == "epsilon"
                 else DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1, **schedule))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=tiny_text_encoder(seed), tokenizer=tiny_tokenizer(path.parent / f".tok-{path.name}"),
        unet=tiny_unet(resolution // 2, 4, seed), scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


def pixel_pipeline(path: Path, *, resolution: int = 8, seed: int = 0) -> Path:
    """A pixel-space fastattr pipeline (no VAE) saved at ``path``."""
    from diffusers import DDIMScheduler

    from fastattr.models import PixelDiffusionPipeline

    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=True,
                              timestep_spacing="trailing")
    pipe = PixelDiffusionPipeline(unet=tiny_unet(resolution, 3, seed), scheduler=scheduler,
                                  text_encoder=tiny_text_encoder(seed),
                                  tokenizer=tiny_tokenizer(path.parent / f".tok-{path.name}"),
                                  text_max_length=TEXT_LENGTH)
    pipe.save_pretrained(path)
    return path


PIPELINES = {
    "latent-epsilon": lambda p: latent_pipeline(p, prediction_type="epsilon"),
    "latent-v": lambda p: latent_pipeline(p, prediction_type="v_prediction"),
    "pixel": lambda p: pixel_pipeline(p),
}


def tiny_text_folder(path: Path) -> Path:
    """A tiny CLIP text encoder + tokenizer saved with save_pretrained (a `--text-encoder` folder)."""
    tiny_tokenizer(path).save_pretrained(path)
    tiny_text_encoder().save_pretrained(path)
    return path
