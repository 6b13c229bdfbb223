"""One ComfyUI server, through its public HTTP + websocket API (ComfyUI's `server.py`).

Everything a server sends is untrusted: bodies are read up to a size limit, JSON is checked to be the
shape expected, images are checked for their size before they are decoded, and every call has a
timeout, so a broken or hostile server gives a `ServerError` naming it, never a hang or a traceback.
A URL is only ever what the user typed (http or https); a bearer token, when one is set, goes in the
`Authorization` header of every request, websocket included (servers behind an authenticating proxy).
"""

from __future__ import annotations

import io
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from studio.backends.base import ServerError, ServerGone

MAX_JSON_BYTES = 64 << 20    # a full /object_info of a big install is a few MB
MAX_IMAGE_BYTES = 256 << 20  # a 4096x4096 16-bit PNG stays well under this
CONNECT_TIMEOUT = 10.0       # seconds for a connection and for each read of an HTTP reply


@dataclass(frozen=True)
class ServerConfig:
    """A server the user added: its URL, how many prompts it may run at once, and an optional token."""

    url: str
    max_in_flight: int = 1
    token: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", normalise_url(self.url))
        if not 1 <= self.max_in_flight <= 64:
            raise ServerError(f"{self.url}: at most 1 to 64 images in flight (got {self.max_in_flight})")


def normalise_url(text: str) -> str:
    """`host:port`, `http://host:port/` or `https://host/path` -> a base URL without a trailing slash."""
    url = text.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"{text!r} is not a server address: give http://host:port or https://host")
    if parts.query or parts.fragment:
        raise ServerError(f"{text!r}: a server address has no ?query or #fragment")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class ComfyClient:
    """HTTP and websocket calls to one server; every failure is a ServerError (ServerGone: unreachable)."""

    def __init__(self, config: ServerConfig, timeout: float = CONNECT_TIMEOUT) -> None:
        self.config = config
        self.url = config.url
        self.timeout = timeout
        self._ssl = ssl.create_default_context() if self.url.startswith("https:") else None

    # ------------------------------------------------------------------ plain HTTP

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}

    def _open(self, path: str, data: bytes | None = None, content_type: str | None = None,
              limit: int = MAX_JSON_BYTES) -> bytes:
        headers = self._headers()
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as reply:
                body = reply.read(limit + 1)
        except urllib.error.HTTPError as exc:
            raise ServerError(f"{self.url}{path}: the server answered {exc.code} {exc.reason}"
                              f"{_error_detail(exc)}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):  # set-up, not an outage: no other server fixes it
                raise ServerError(f"{self.url}: its TLS certificate is not trusted ({reason.verify_message}); if "
                                  "your own CA signed it, point SSL_CERT_FILE at that CA's certificate") from None
            raise ServerGone(f"{self.url}: cannot reach the server ({reason})") from None
        if len(body) > limit:
            raise ServerError(f"{self.url}{path}: the reply is larger than {limit >> 20} MB; not reading it")
        return body

    def get_json(self, path: str) -> Any:
        return _json(self._open(path), f"{self.url}{path}")

    def post_json(self, path: str, payload: Any) -> Any:
        body = self._open(path, json.dumps(payload).encode(), "application/json")
        return _json(body, f"{self.url}{path}") if body.strip() else None

    # ------------------------------------------------------------------ the API

    def system_stats(self) -> dict[str, Any]:
        stats = self.get_json("/system_stats")
        if not isinstance(stats, dict) or not isinstance(stats.get("system"), dict):
            raise ServerError(f"{self.url}: /system_stats is not a ComfyUI answer (is this a ComfyUI server?)")
        return stats

    def object_info(self, node: str) -> dict[str, Any]:
        info = self.get_json(f"/object_info/{urllib.parse.quote(node)}")
        if not isinstance(info, dict) or not isinstance(info.get(node), dict):
            raise ServerError(f"{self.url}: the server has no {node} node")
        return info[node]

    def choices(self, node: str, field_name: str) -> list[str]:
        """The values a node's list input accepts (checkpoint names, LoRAs, samplers, ...)."""
        spec = self.object_info(node).get("input", {}).get("required", {}).get(field_name)
        values = spec[0] if isinstance(spec, list) and spec else None
        if isinstance(spec, list) and len(spec) > 1 and spec[0] == "COMBO" and isinstance(spec[1], dict):
            values = spec[1].get("options")  # the newer COMBO spelling
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ServerError(f"{self.url}: the server's {node}.{field_name} list is not a list of names")
        return values

    def upload_image(self, image: Image.Image, name: str) -> str:
        """Upload a PNG into the server's input folder; the name it was stored under."""
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n".encode() + buf.getvalue() + b"\r\n",
            f'--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'.encode(),
            f"--{boundary}--\r\n".encode(),
        ]
        reply = _json(self._open("/upload/image", b"".join(parts), f"multipart/form-data; boundary={boundary}"),
                      f"{self.url}/upload/image")
        stored = reply.get("name") if isinstance(reply, dict) else None
        if not isinstance(stored, str):
            raise ServerError(f"{self.url}/upload/image: the reply names no stored file")
        sub = reply.get("subfolder")
        return f"{sub}/{stored}" if isinstance(sub, str) and sub else stored

    def queue_prompt(self, graph: dict[str, Any], client_id: str) -> str:
        try:
            reply = self.post_json("/prompt", {"prompt": graph, "client_id": client_id})
        except ServerError as exc:
            raise ServerError(f"{self.url}: the server refused the job: {exc}") from None
        prompt_id = reply.get("prompt_id") if isinstance(reply, dict) else None
        if not isinstance(prompt_id, str):
            raise ServerError(f"{self.url}/prompt: the reply has no prompt id")
        return prompt_id

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's record, or None while it has none."""
        reply = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}")
        if not isinstance(reply, dict):
            raise ServerError(f"{self.url}/history: not a JSON object")
        entry = reply.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def view(self, ref: dict[str, Any], expected: tuple[int, int]) -> Image.Image:
        """An output image, checked to be the size asked for before its pixels are decoded."""
        query = urllib.parse.urlencode({k: str(ref.get(k, "")) for k in ("filename", "subfolder", "type")})
        body = self._open(f"/view?{query}", limit=MAX_IMAGE_BYTES)
        try:
            image = Image.open(io.BytesIO(body))
            if image.size != expected:
                raise ServerError(f"{self.url}: the server sent a {image.size[0]}x{image.size[1]} image "
                                  f"where {expected[0]}x{expected[1]} was asked for")
            image.load()
        except ServerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure means the server sent no usable image
            raise ServerError(f"{self.url}: the image the server sent cannot be read ({exc})") from None
        return image.convert("RGB")

    def cancel(self, prompt_id: str) -> None:
        """Take the prompt off the queue and stop it if it is running (only it: ComfyUI 0.3.60+ takes an id)."""
        for path, payload in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self.post_json(path, payload)
            except ServerError:
                pass  # best effort: the caller stops waiting whatever the server says

    def websocket(self, client_id: str) -> Any:
        import websocket  # websocket-client

        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws",
                                       urllib.parse.urlencode({"clientId": client_id}), ""))
        headers = [f"{k}: {v}" for k, v in self._headers().items()]
        try:
            return websocket.create_connection(url, timeout=self.timeout, header=headers,
                                               sslopt={"context": self._ssl} if self._ssl else None)
        except websocket.WebSocketBadStatusException as exc:
            raise ServerError(f"{self.url}/ws: the server refused the progress channel ({exc.status_code})") from None
        except (websocket.WebSocketException, OSError) as exc:
            raise ServerGone(f"{self.url}: cannot open the progress channel ({exc})") from None


def _json(body: bytes, origin: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ServerError(f"{origin}: the server sent something that is not JSON "
                          f"({body[:60]!r}{'...' if len(body) > 60 else ''})") from None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """ComfyUI explains a refused prompt in JSON: its message and the first node error."""
    try:
        data = json.loads(exc.read(1 << 16))
    except (ValueError, OSError):
        return ""
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    text = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    for node in (data.get("node_errors") or {}).values() if isinstance(data.get("node_errors"), dict) else ():
        errors = node.get("errors") if isinstance(node, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            detail = errors[0].get("details") or errors[0].get("message")
            text = f"{text}: {detail}" if text else str(detail)
            break
    return f": {str(text)[:300]}" if text else ""
