"""Reading uploads: the body-size guard and the image bytes of a request."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from d2_triton.gateway.errors import GatewayError
from d2_triton.gateway.interface import UPLOAD_FIELD
from d2_triton.gateway.observe import note

# Room for multipart boundaries and headers around the image itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, without buffering them first.

    A declared Content-Length over the limit is refused before any byte is read; a body that
    grows past it (chunked uploads) is cut off as soon as it does.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, unless its body is over the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self._message(int(declared))}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise GatewayError(413, self._message(received))
            return message

        await self.app(scope, limited_receive, send)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over the gateway's limit of {self.max_bytes}"


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The image bytes of a multipart upload (field ``image``) or of the raw body.

    An image over ``max_bytes`` (the gateway's limit, or the server's ``max_image_bytes``
    when that is lower) is a 413.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get(UPLOAD_FIELD)
            if upload is None or isinstance(upload, str):
                raise GatewayError(
                    400, f"multipart upload needs a file in the field {UPLOAD_FIELD!r}"
                )
            data = await upload.read()
    else:
        data = await request.body()
    note(upload_bytes=len(data))
    if len(data) > max_bytes:
        raise GatewayError(413, f"image is {len(data)} bytes, over the limit of {max_bytes} bytes")
    return data
