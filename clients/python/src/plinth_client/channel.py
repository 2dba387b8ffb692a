"""Channels to a Plinth server, with the API key and a request id on every
call, over TLS or mTLS when asked."""

from __future__ import annotations

import dataclasses
import pathlib
import uuid
from typing import Any, Callable, Optional, Sequence, Tuple

import grpc

API_KEY_HEADER = "x-api-key"
REQUEST_ID_HEADER = "x-request-id"


@dataclasses.dataclass(frozen=True)
class Tls:
    """The CA that signed the server's certificate and, for mTLS, the
    client's certificate chain and private key (PEM bytes)."""

    ca: bytes
    certificate: Optional[bytes] = None
    private_key: Optional[bytes] = None
    # The name the server's certificate must carry, when it is not the host
    # of the target (a server reached by IP address, say).
    server_name: Optional[str] = None

    @staticmethod
    def from_files(
        ca: str,
        certificate: Optional[str] = None,
        private_key: Optional[str] = None,
        server_name: Optional[str] = None,
    ) -> "Tls":
        def read(path: Optional[str]) -> Optional[bytes]:
            return pathlib.Path(path).read_bytes() if path else None

        return Tls(pathlib.Path(ca).read_bytes(), read(certificate), read(private_key), server_name)


def connect(
    target: str,
    *,
    api_key: Optional[str] = None,
    tls: Optional[Tls] = None,
    options: Sequence[Tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel to `target` ("host:port"): plaintext without `tls`."""
    options = list(options)
    if tls is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca,
            private_key=tls.private_key,
            certificate_chain=tls.certificate,
        )
        channel = grpc.secure_channel(target, credentials, options=options)
    return grpc.intercept_channel(channel, _Headers(api_key))


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _Headers(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the API key, and a request id unless the caller sent one."""

    def __init__(self, api_key: Optional[str]) -> None:
        self._api_key = api_key

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = list(details.metadata or [])
        names = {name for name, _ in metadata}
        if self._api_key and API_KEY_HEADER not in names:
            metadata.append((API_KEY_HEADER, self._api_key))
        if REQUEST_ID_HEADER not in names:
            metadata.append((REQUEST_ID_HEADER, str(uuid.uuid4())))
        return _CallDetails(details, metadata)

    def _intercept(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    intercept_unary_unary = _intercept
    intercept_unary_stream = _intercept
    intercept_stream_unary = _intercept
    intercept_stream_stream = _intercept
