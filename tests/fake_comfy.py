"""A ComfyUI stand-in: hostile or broken, for what a real server never does on purpose (bad JSON, a 500,
a huge image, a websocket that never says "done", an answer that never comes), listing the checkpoints
and LoRAs a test gives it, or working and in the test's hands ("ok": each prompt can be held until the
test releases it, so a test proves two jobs run at once without sleeping). Real behaviour is tested
against a real ComfyUI."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import ssl
import struct
import threading
import urllib.parse
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def object_info(checkpoints: list[str], loras: list[str]) -> dict[str, dict]:
    """The parts of ComfyUI's /object_info that Studio reads, in its spelling."""
    return {"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [checkpoints]}}},
            "LoraLoader": {"input": {"required": {"lora_name": [loras]}}},
            "KSampler": {"input": {"required": {"sampler_name": [["dpmpp_2m", "euler"]],
                                                "scheduler": [["normal", "karras"]]}}}}


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: a client that decodes before checking fails."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def colour(seed: int) -> tuple[int, int, int]:
    """The colour of the "ok" server's picture (and previews) for a seed: tells the pictures apart."""
    return (seed * 47) % 256, (seed * 101) % 256, 200


def png(size: tuple[int, int], rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Prompt:
    """One prompt the "ok" server took: its id, the seed and size its graph asks for, and how it ends."""

    id: str
    client_id: str
    seed: int
    size: tuple[int, int]
    released: threading.Event = field(default_factory=threading.Event)  # set: the server finishes it
    cancelled: bool = False
    done: bool = False


class FakeComfy:
    """`mode` picks the behaviour: "ok" (works; with `hold`, each prompt waits for `release()`), "good"
    (answers a status check: its `checkpoints` and `loras`), or a fault: "bad_json", "error_500", "silent"
    (the websocket never finishes), "huge", "hang" (no HTTP answer until closed)."""

    _ids = itertools.count(1)

    def __init__(self, mode: str, hold: bool = False, checkpoints: tuple[str, ...] = ("model.safetensors",),
                 loras: tuple[str, ...] = (), tls: ssl.SSLContext | None = None) -> None:
        self.mode, self.hold = mode, hold
        self.info = object_info(list(checkpoints), list(loras))
        self.headers: list[dict[str, str]] = []
        self.cancelled: list[str] = []
        self.prompts: list[Prompt] = []  # "ok": every prompt taken, in order
        self._cond = threading.Condition()
        self._closed = threading.Event()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if tls is not None:  # https and wss, as behind a TLS proxy
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def held(self) -> list[Prompt]:
        """The prompts running and waiting for release()."""
        with self._cond:
            return [p for p in self.prompts if not (p.released.is_set() or p.cancelled or p.done)]

    def release(self, seed: int | None = None) -> None:
        """Let the held prompts (only the one for `seed`, if given) finish."""
        with self._cond:
            for p in self.prompts:
                if seed is None or p.seed == seed:
                    p.released.set()

    def close(self) -> None:
        """Stop serving: open progress channels are dropped (a server that goes away mid-job)."""
        self._closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _take(self, body: bytes) -> Prompt:
        payload = json.loads(body)
        nodes = payload["prompt"].values()
        sample = next(n["inputs"] for n in nodes if n["class_type"] == "KSampler")
        latent = next(n["inputs"] for n in nodes if n["class_type"] == "EmptyLatentImage")
        prompt = Prompt(f"fake-{next(self._ids)}", payload["client_id"], sample["seed"],
                        (latent["width"], latent["height"]))
        if not self.hold:
            prompt.released.set()
        with self._cond:
            self.prompts.append(prompt)
            self._cond.notify_all()
        return prompt

    def _cancel(self, body: bytes) -> None:
        payload = json.loads(body or b"{}")
        ids = set(payload.get("delete", [])) | {payload.get("prompt_id")}
        with self._cond:
            for p in self.prompts:
                if p.id in ids and not p.done:
                    p.cancelled = True

    def _prompt_for(self, client_id: str) -> Prompt | None:
        """The prompt queued with this client id, once it is (None: the server closed first)."""
        with self._cond:
            while not self._closed.is_set():
                found = next((p for p in self.prompts if p.client_id == client_id), None)
                if found is not None:
                    return found
                self._cond.wait(0.05)
        return None

    def _find(self, prompt_id: str) -> Prompt | None:
        with self._cond:
            return next((p for p in self.prompts if p.id == prompt_id), None)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeComfy

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.fake.headers.append(dict(self.headers))
        mode, path = self.fake.mode, self.path
        if path.startswith("/ws"):
            return self._websocket()
        if mode == "hang":
            self.fake._closed.wait()  # a server that accepted the connection and went quiet
            return None
        if path == "/system_stats":
            if mode == "bad_json":
                return self._send(200, b"<html>this is not ComfyUI</html>")
            if mode == "error_500":
                return self._send(500, b'{"error": "boom"}')
            return self._send(200, json.dumps({"system": {"comfyui_version": "fake"}, "devices": []}).encode())
        if path.startswith("/object_info/"):
            node = path.rsplit("/", 1)[1]
            return self._send(200, json.dumps({node: self.fake.info[node]}).encode())
        if path.startswith("/history/") and mode == "ok":
            prompt = self.fake._find(path.rsplit("/", 1)[1])
            if prompt is None or not prompt.done:
                return self._send(200, b"{}")
            images = [{"filename": f"{prompt.id}.png", "subfolder": "", "type": "temp"}]
            return self._send(200, json.dumps({prompt.id: {"outputs": {"save": {"images": images}}}}).encode())
        if path.startswith("/view") and mode == "ok":
            name = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["filename"][0]
            prompt = self.fake._find(name.removesuffix(".png"))
            if prompt is None:
                return self._send(404, b"{}")
            return self._send(200, png(prompt.size, colour(prompt.seed)), "image/png")
        if path.startswith("/history/"):
            prompt_id = path.rsplit("/", 1)[1]
            if mode != "huge":
                return self._send(200, b"{}")  # still running
            images = [{"filename": "x.png", "subfolder": "", "type": "temp"}]
            return self._send(200, json.dumps({prompt_id: {"outputs": {"save": {"images": images}}}}).encode())
        if path.startswith("/view"):
            return self._send(200, _png_header(8000, 8000), "image/png")  # 64 MP where 64x64 was asked for
        return self._send(404, b"{}")

    def do_POST(self) -> None:  # noqa: N802
        self.fake.headers.append(dict(self.headers))
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/prompt" and self.fake.mode == "ok":
            return self._send(200, json.dumps({"prompt_id": self.fake._take(body).id, "number": 1}).encode())
        if self.path == "/prompt":
            return self._send(200, b'{"prompt_id": "p1", "number": 1}')
        if self.path in ("/queue", "/interrupt"):
            self.fake.cancelled.append(self.path + " " + body.decode())
            if self.fake.mode == "ok":
                self.fake._cancel(body)
            return self._send(200, b"")
        return self._send(404, b"{}")

    def _websocket(self) -> None:
        """Accept the websocket (RFC 6455 handshake), then: "huge" says done at once, the rest stay silent."""
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] +
                                                "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.wfile.flush()
        if self.fake.mode == "ok":
            return self._run_prompt(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["clientId"][0])
        if self.fake.mode == "huge":
            text = json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "p1"}}).encode()
            self.wfile.write(bytes([0x81, len(text)]) + text)
            self.wfile.flush()
        try:
            while self.rfile.read(1):  # hold the connection open, saying nothing, until the client goes
                pass
        except OSError:
            pass
        self.close_connection = True

    def _frame(self, opcode: int, data: bytes) -> None:
        """One unmasked websocket frame (a server's), text (1) or binary (2)."""
        n = len(data)
        head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n))
        self.wfile.write(head + data)
        self.wfile.flush()

    def _event(self, kind: str, **data: object) -> None:
        self._frame(1, json.dumps({"type": kind, "data": data}).encode())

    def _run_prompt(self, client_id: str) -> None:
        """As ComfyUI: a step with a preview frame (the prompt's colour), then, once released, done; a
        cancelled prompt just stops talking, a closed server drops the connection."""
        fake = self.fake
        prompt = fake._prompt_for(client_id)
        if prompt is None:
            return
        self._event("progress", value=1, max=2, prompt_id=prompt.id)
        self._frame(2, struct.pack(">II", 1, 2) + png((8, 8), colour(prompt.seed)))
        while not (prompt.released.wait(0.02) or prompt.cancelled or fake._closed.is_set()):
            pass
        if fake._closed.is_set() or prompt.cancelled:
            self.close_connection = True
            return
        prompt.done = True
        self._event("progress", value=2, max=2, prompt_id=prompt.id)
        self._event("executing", node=None, prompt_id=prompt.id)
        try:
            while self.rfile.read(1):  # until the client closes its side
                pass
        except OSError:
            pass
        self.close_connection = True
