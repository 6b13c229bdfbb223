"""One image on one ComfyUI server: upload its inputs, queue its graph, follow it on the websocket
(progress, preview frames, completion), fetch the result, paste it back, and write its recipe."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from PIL import Image

from studio import __version__
from studio.backends.base import BackendKind, ServerError, ServerGone, StepCallback, StopCheck
from studio.backends.comfy_client import ComfyClient
from studio.backends.comfy_graph import OUTPUT_NODE, GraphInputs, build_graph
from studio.engine import prompts
from studio.engine.generate import Cancelled, PreparedJob, prepare_inputs
from studio.recipe import samplers
from studio.recipe.request import GenerationRequest, GenerationResult, RequestError, StepInfo, to_recipe

NATIVE_SIZE = 512      # the size of a text-to-image with no size given: what an SD 1.x checkpoint is made for
IDLE_TIMEOUT = 120.0   # seconds without a word from the server before a job is given up
POLL = 0.1             # seconds between checks for a cancel while waiting on the websocket
HISTORY_WAIT = 5.0     # seconds a finished prompt may take to appear in /history
CLOSE_TIMEOUT = 0.5    # seconds to wait for the server's side of the websocket close handshake
_PREVIEW_IMAGE = 1     # ComfyUI's binary event type for a preview frame (then 4 bytes of format, then the image)


@dataclass(frozen=True)
class ServerInfo:
    """What a server offers, read from /system_stats and /object_info."""

    version: str
    checkpoints: list[str]
    loras: list[str]
    samplers: list[str]
    schedulers: list[str]


def read_server_info(client: ComfyClient) -> ServerInfo:
    version = client.system_stats()["system"].get("comfyui_version")
    loras = client.choices("LoraLoader", "lora_name")
    return ServerInfo(str(version or "unknown"), client.choices("CheckpointLoaderSimple", "ckpt_name"), loras,
                      client.choices("KSampler", "sampler_name"), client.choices("KSampler", "scheduler"))


def find_name(what: str, wanted: str, available: list[str], server: str) -> str:
    """The server's file for `wanted`: the same relative name, else the same file name or stem (any case)."""
    if wanted in available:
        return wanted
    key = PurePosixPath(wanted.replace("\\", "/")).name.lower()
    for name in available:
        path = PurePosixPath(name.replace("\\", "/"))
        if key in (path.name.lower(), path.stem.lower()):
            return name
    shown = ", ".join(available[:12]) + (" ..." if len(available) > 12 else "") if available else "none"
    raise RequestError(f"{server} has no {what} called {wanted!r} (it has: {shown})")


def check_request(request: GenerationRequest) -> None:
    """What a ComfyUI server cannot do, said before anything is sent."""
    if request.varies():
        raise RequestError("variation seeds work on this computer only: ComfyUI's core nodes cannot mix two "
                           "seeds' noise. Set Variation to 0, or run the job locally")
    if request.vae:
        raise RequestError("a library VAE works on this computer only; a server uses its checkpoint's own VAE")
    if request.redraw_scale is not None:
        raise RequestError("a tiled redraw runs on this computer only: run the job locally")


def run_item(client: ComfyClient, info: ServerInfo, request: GenerationRequest, index: int, count: int,
             on_step: StepCallback | None, should_stop: StopCheck,
             idle_timeout: float = IDLE_TIMEOUT) -> GenerationResult:
    """Make batch item `index` of `count` (`request` is that item alone) on the client's server."""
    start = time.perf_counter()
    job = prepare_inputs(request, NATIVE_SIZE)
    prompt, tags = prompts.split_loras(request.prompt)
    negative, negative_tags = prompts.split_loras(request.negative_prompt)
    loras = [(find_name("LoRA", tag.name, info.loras, client.url), tag.weight) for tag in tags + negative_tags]
    sampler, scheduler = samplers.BY_NAME[request.scheduler].comfy
    for name, have in ((sampler, info.samplers), (scheduler, info.schedulers)):
        if name not in have:
            raise ServerError(f"{client.url} has no {name!r} sampler or schedule (for {request.scheduler})")
    inputs = GraphInputs(
        checkpoint=find_name("checkpoint", request.model, info.checkpoints, client.url), prompt=prompt,
        negative=negative, seed=request.seed, steps=request.steps, cfg=float(request.cfg), sampler=sampler,
        scheduler=scheduler, width=job.width, height=job.height, loras=loras,
        image=_upload(client, job.kwargs.get("image")), mask=_upload(client, job.kwargs.get("mask_image")),
        denoise=float(job.kwargs.get("strength", 1.0)))
    if should_stop():
        raise Cancelled()
    client_id = uuid.uuid4().hex
    channel = client.websocket(client_id)  # before queueing, so no progress message is missed
    try:
        prompt_id = client.queue_prompt(build_graph(inputs), client_id)
        _follow(client, channel, prompt_id, job, (index, count), on_step, should_stop, idle_timeout, start)
    finally:
        channel.close(timeout=CLOSE_TIMEOUT)
    image = _fetch(client, prompt_id, (job.width, job.height))
    seconds = time.perf_counter() - start
    recipe = _recipe(request, job, inputs, client.url, info, index, count, seconds)
    return GenerationResult(job.finish(image), request.seed, recipe, seconds)


def _upload(client: ComfyClient, image: Image.Image | None) -> str | None:
    if image is None:
        return None
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    # Named by content: the same init image is stored once however often it is sent.
    return client.upload_image(image, f"studio-{hashlib.sha256(buf.getvalue()).hexdigest()[:20]}.png")


def _follow(client: ComfyClient, channel: Any, prompt_id: str, job: PreparedJob, item: tuple[int, int],
            on_step: StepCallback | None, should_stop: StopCheck, idle_timeout: float, start: float) -> None:
    """Wait on the websocket until the prompt ends, reporting its steps and previews; cancel on request."""
    import websocket

    channel.settimeout(POLL)
    last_word, step, total, preview = time.monotonic(), 0, 0, None
    while True:
        if should_stop():
            client.cancel(prompt_id)
            raise Cancelled()
        try:
            message = channel.recv()
        except websocket.WebSocketTimeoutException:
            if time.monotonic() - last_word > idle_timeout:
                if client.history(prompt_id) is not None:
                    return  # it finished and the word was lost
                client.cancel(prompt_id)
                raise ServerError(f"{client.url}: no word from the server for {idle_timeout:.0f} s; "
                                  "the job was given up") from None
            continue
        except (websocket.WebSocketException, OSError) as exc:
            raise ServerGone(f"{client.url}: the server closed the progress channel mid-job ({exc})") from None
        last_word = time.monotonic()
        if isinstance(message, bytes):
            preview = _preview(message) if on_step is not None else None
            if preview is not None and on_step is not None and total:
                on_step(StepInfo(step, total, time.perf_counter() - start, preview, *item, previews=[preview],
                                 region=job.region))
            continue
        event = _event(message)
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        kind = event.get("type")
        if kind == "progress" and isinstance(data.get("value"), int) and isinstance(data.get("max"), int):
            step, total = data["value"], data["max"]
            if on_step is not None:
                on_step(StepInfo(step, total, time.perf_counter() - start, None, *item, region=job.region))
        elif kind == "execution_error":
            message_text = str(data.get("exception_message") or "unknown error").strip().splitlines()
            raise ServerError(f"{client.url}: the server failed in {data.get('node_type', 'a node')}: "
                              f"{message_text[0] if message_text else 'unknown error'}")
        elif kind == "execution_interrupted":
            raise ServerError(f"{client.url}: the job was interrupted on the server (by someone else?)")
        elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return  # sent after the history is written ("execution_success" comes before it)


def _event(message: Any) -> dict[str, Any]:
    try:
        event = json.loads(message)
    except (ValueError, TypeError, RecursionError):
        return {}
    return event if isinstance(event, dict) else {}


def _preview(frame: bytes) -> Any:
    """A binary preview frame -> uint8 HxWx3, or None for anything else (or anything unreadable)."""
    import numpy as np

    if len(frame) < 8 or int.from_bytes(frame[:4], "big") != _PREVIEW_IMAGE or len(frame) > 16 << 20:
        return None
    try:
        with Image.open(io.BytesIO(frame[8:])) as image:
            if image.width * image.height > 4096 * 4096:
                return None
            return np.asarray(image.convert("RGB"))
    except Exception:  # noqa: BLE001 - a bad preview frame is skipped, the job goes on
        return None


def _fetch(client: ComfyClient, prompt_id: str, size: tuple[int, int]) -> Image.Image:
    entry = client.history(prompt_id)
    for _ in range(int(HISTORY_WAIT / POLL)):  # a server that says "done" a moment before it records it
        if entry is not None:
            break
        time.sleep(POLL)
        entry = client.history(prompt_id)
    outputs = entry.get("outputs") if entry else None
    images = outputs.get(OUTPUT_NODE, {}).get("images") if isinstance(outputs, dict) else None
    if not isinstance(images, list) or not images or not isinstance(images[0], dict):
        raise ServerError(f"{client.url}: the job finished but its history lists no image")
    return client.view(images[0], size)


def _recipe(request: GenerationRequest, job: PreparedJob, g: GraphInputs, server: str, info: ServerInfo,
            index: int, count: int, seconds: float) -> dict[str, Any]:
    """The request's recipe (item `index` of `count`), with the server's names and `backend` saying who made it."""
    recipe = to_recipe(request)
    recipe.update(
        app_version=__version__, width=job.width, height=job.height, batch_size=count, batch_index=index,
        model={"name": g.checkpoint, "hash": None, "path": None, "family": None},
        loras=[{"name": name, "weight": weight, "hash": None} for name, weight in g.loras], vae=None,
        backend={"kind": BackendKind.COMFYUI.value, "server": server, "comfyui_version": info.version,
                 "sampler": g.sampler, "schedule": g.scheduler},
        device="server", dtype=None, seconds=round(seconds, 3),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat())
    return recipe
