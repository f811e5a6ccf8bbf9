"""A pixel-space text-to-image pipeline in diffusers' layout (no VAE): the embedded world's model format."""

from __future__ import annotations

from typing import Any, Sequence

from .._deps import require

torch = require("torch", feature="fastattr.models")
diffusers = require("diffusers", feature="fastattr.models")

__all__ = ["PixelDiffusionPipeline"]


class PixelDiffusionPipeline(diffusers.DiffusionPipeline):
    """UNet + scheduler + text encoder + tokenizer, denoising RGB pixels directly.

    ``save_pretrained`` writes the usual pipeline folder (``model_index.json``, ``unet/``,
    ``scheduler/``, ``text_encoder/``, ``tokenizer/``). Prompts are tokenized to a fixed
    ``text_max_length`` and the states of padding tokens are set to zero, so a prompt's condition
    never depends on its batch; any transformers encoder with a tokenizer serves (the world uses
    all-MiniLM-L6-v2). Sampling is the scheduler's own loop with classifier-free guidance, the
    empty prompt as the unconditional one (training drops captions to "" for it).

    Example:
        >>> pipe = PixelDiffusionPipeline(unet, scheduler, text_encoder, tokenizer)  # doctest: +SKIP
        >>> pipe(["a red circle"], num_inference_steps=10, output_type="np").images.shape  # doctest: +SKIP
        (1, 16, 16, 3)
    """

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet: Any, scheduler: Any, text_encoder: Any, tokenizer: Any,
                 text_max_length: int = 77) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder,
                              tokenizer=tokenizer)
        self.register_to_config(text_max_length=int(text_max_length))

    @property
    def resolution(self) -> int:
        size = self.unet.config.sample_size
        return int(size if isinstance(size, int) else size[0])

    def encode_prompt(self, prompts: Sequence[str], device: Any = None) -> "torch.Tensor":
        """Fixed-length text states (B, text_max_length, D) float32, zero after each prompt's tokens."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        device = device or self.text_encoder.device
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True,
                                max_length=self.config.text_max_length, return_tensors="pt")
        mask = tokens["attention_mask"].to(device)
        with torch.no_grad():
            states = self.text_encoder(input_ids=tokens["input_ids"].to(device),
                                       attention_mask=mask).last_hidden_state
        return (states * mask.unsqueeze(-1).to(states.dtype)).float()

    @torch.no_grad()
    def __call__(self, prompt: str | Sequence[str], *, num_inference_steps: int = 25,
                 guidance_scale: float = 3.0, generator: Any = None, output_type: str = "np",
                 height: int | None = None, width: int | None = None,
                 prompt_embeds: "torch.Tensor | None" = None) -> Any:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        device = self._execution_device
        cond = prompt_embeds if prompt_embeds is not None else self.encode_prompt(prompts, device)
        batch = cond.shape[0]
        guided = guidance_scale > 1.0
        if guided:
            uncond = self.encode_prompt([""], device).expand(batch, -1, -1)
            cond = torch.cat([uncond, cond])
        size = (batch, self.unet.config.in_channels, height or self.resolution, width or self.resolution)
        x = diffusers.utils.torch_utils.randn_tensor(size, generator=generator, device=device,
                                                     dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        x = x * self.scheduler.init_noise_sigma
        for t in self.progress_bar(self.scheduler.timesteps):
            x_in = self.scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            pred = self.unet(x_in, t, encoder_hidden_states=cond.to(self.unet.dtype)).sample
            if guided:
                pred_uncond, pred_cond = pred.chunk(2)
                pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
            x = self.scheduler.step(pred, t, x).prev_sample
        images = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
        self.maybe_free_model_hooks()
        if output_type == "pil":
            images = self.numpy_to_pil(images)
        return diffusers.ImagePipelineOutput(images=images)
