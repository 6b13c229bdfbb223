"""A request as a ComfyUI API-format graph (the JSON `POST /prompt` takes), built from ComfyUI's core nodes.

One graph makes one image: Studio sends each batch item as its own prompt with its own seed, so item k
is the same picture whichever server makes it, alone or in a batch, and a batch spreads over servers.
Inpaint and outpaint send the region Studio prepared (the crop around the mask for "only masked", the
extended canvas for outpaint) with its mask; the server repaints it and Studio pastes the result back
itself, so the pixels outside the mask stay exactly the original's. `InpaintModelConditioning` serves
both plain and inpainting checkpoints (a plain model ignores the extra image channels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OUTPUT_NODE = "save"


@dataclass(frozen=True)
class GraphInputs:
    """Everything the graph needs, in the server's own names (checkpoint, LoRAs, sampler, uploads)."""

    checkpoint: str
    prompt: str
    negative: str
    seed: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    width: int
    height: int
    loras: list[tuple[str, float]] = field(default_factory=list)  # (server's LoRA file, weight)
    image: str | None = None  # an uploaded init image (img2img, inpaint, outpaint), at width x height
    mask: str | None = None   # an uploaded mask (white repaints), at width x height
    denoise: float = 1.0


def build_graph(g: GraphInputs) -> dict[str, dict[str, Any]]:
    graph: dict[str, dict[str, Any]] = {
        "ckpt": _node("CheckpointLoaderSimple", ckpt_name=g.checkpoint),
    }
    model, clip = ["ckpt", 0], ["ckpt", 1]
    for k, (name, weight) in enumerate(g.loras):
        graph[f"lora{k}"] = _node("LoraLoader", model=model, clip=clip, lora_name=name,
                                  strength_model=weight, strength_clip=weight)
        model, clip = [f"lora{k}", 0], [f"lora{k}", 1]
    graph["pos"] = _node("CLIPTextEncode", text=g.prompt, clip=clip)
    graph["neg"] = _node("CLIPTextEncode", text=g.negative, clip=clip)
    positive, negative = ["pos", 0], ["neg", 0]
    vae = ["ckpt", 2]
    if g.image is None:
        graph["latent"] = _node("EmptyLatentImage", width=g.width, height=g.height, batch_size=1)
        latent = ["latent", 0]
    else:
        graph["image"] = _node("LoadImage", image=g.image)
        if g.mask is None:
            graph["encode"] = _node("VAEEncode", pixels=["image", 0], vae=vae)
            latent = ["encode", 0]
        else:
            graph["mask"] = _node("LoadImageMask", image=g.mask, channel="red")
            graph["inpaint"] = _node("InpaintModelConditioning", positive=positive, negative=negative,
                                     vae=vae, pixels=["image", 0], mask=["mask", 0], noise_mask=True)
            positive, negative, latent = ["inpaint", 0], ["inpaint", 1], ["inpaint", 2]
    graph["sample"] = _node("KSampler", model=model, positive=positive, negative=negative, latent_image=latent,
                            seed=g.seed, steps=g.steps, cfg=g.cfg, sampler_name=g.sampler,
                            scheduler=g.scheduler, denoise=g.denoise)
    graph["decode"] = _node("VAEDecode", samples=["sample", 0], vae=vae)
    # PreviewImage writes to the server's temp folder (emptied when it restarts), not the user's outputs.
    graph[OUTPUT_NODE] = _node("PreviewImage", images=["decode", 0])
    return graph


def _node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}
