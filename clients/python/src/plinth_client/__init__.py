"""Plinth's Python client: a channel that carries the caller's credentials,
and errors that carry Plinth's stable reason.

    import plinth_client
    from plinth.rbac.v1 import rbac_pb2, rbac_pb2_grpc

    channel = plinth_client.connect(
        "core.example:50051",
        api_key=os.environ["PLINTH_API_KEY"],
        tls=plinth_client.Tls.from_files("ca.pem", "module.pem", "module.key"),
    )
    rbac = rbac_pb2_grpc.RbacServiceStub(channel)
    try:
        rbac.Check(rbac_pb2.CheckRequest(...), timeout=2)
    except grpc.RpcError as error:
        raise plinth_client.PlinthError.from_rpc_error(error) from error

The messages and stubs are generated (package `plinth`); this layer is the
only hand-written part.
"""

from plinth_client.channel import Tls, connect
from plinth_client.errors import FieldViolation, PlinthError

__all__ = ["FieldViolation", "PlinthError", "Tls", "connect"]
