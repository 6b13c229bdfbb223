"""A hostile or broken ComfyUI stand-in, for what a real server never does on purpose: bad JSON, a 500,
a huge image, a websocket that never says "done", an answer that never comes; and, for the window's fast
tests, a server that lists the checkpoints and LoRAs it is given. Real behaviour is tested against a real
ComfyUI."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


class FakeComfy:
    """`mode` picks the fault: "bad_json", "error_500", "silent" (the websocket never finishes), "huge",
    "hang" (no HTTP answer until closed); "good" has none. It has `checkpoints` and `loras`."""

    def __init__(self, mode: str, checkpoints: tuple[str, ...] = ("model.safetensors",),
                 loras: tuple[str, ...] = ()) -> None:
        self.mode = mode
        self.info = object_info(list(checkpoints), list(loras))
        self.closed = threading.Event()
        self.headers: list[dict[str, str]] = []
        self.cancelled: list[str] = []
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


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
            self.fake.closed.wait()  # a server that accepted the connection and went quiet
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
        if self.path == "/prompt":
            return self._send(200, b'{"prompt_id": "p1", "number": 1}')
        if self.path in ("/queue", "/interrupt"):
            self.fake.cancelled.append(self.path + " " + body.decode())
            return self._send(200, b"")
        return self._send(404, b"{}")

    def _websocket(self) -> None:
        """Accept the websocket (RFC 6455 handshake), then: "huge" says done at once, the rest stay silent."""
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] +
                                                "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.wfile.flush()
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
