"""Plinth's errors as Python exceptions: the gRPC code and message, the
stable reason of `google.rpc.ErrorInfo` (one of `plinth.errors.v1.ErrorReason`)
with its metadata, and the field violations of `google.rpc.BadRequest`."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_TRAILER = "grpc-status-details-bin"


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class PlinthError(Exception):
    """A refused or failed call. Branch on `reason`, never on `message`."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: Optional[str] = None,
        metadata: Optional[Dict[str, str]] = None,
        field_violations: Optional[List[FieldViolation]] = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}
        self.field_violations = field_violations or []

    @staticmethod
    def from_rpc_error(error: grpc.RpcError) -> "PlinthError":
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        message = error.details() if isinstance(error, grpc.Call) else str(error)
        status = _status(error)
        reason, metadata, violations = None, {}, []
        for detail in status.details if status else []:
            info = error_details_pb2.ErrorInfo()
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Unpack(bad_request):
                violations = [
                    FieldViolation(violation.field, violation.description)
                    for violation in bad_request.field_violations
                ]
        return PlinthError(code, message or "", reason, metadata, violations)


def _status(error: grpc.RpcError) -> Optional[status_pb2.Status]:
    trailers = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    for name, value in trailers or ():
        if name == _DETAILS_TRAILER:
            return status_pb2.Status.FromString(value)
    return None
