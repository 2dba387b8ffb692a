"""The installed client against a real core over mTLS (run by the Rust
test `clients::the_python_client_*`, which starts the core and writes the
certificates): credentials on every call, refusals read with their reason.

Environment: PLINTH_TARGET (host:port), PLINTH_CA, PLINTH_CERTIFICATE,
PLINTH_PRIVATE_KEY (PEM files), PLINTH_API_KEY (a key of module
"inventory", the module the certificate names).
"""

import os
import sys

import grpc
import plinth_client
from plinth.auth.v1 import auth_pb2, auth_pb2_grpc
from plinth.tenant.v1 import tenant_pb2, tenant_pb2_grpc


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"FAILED: {what}")


def main() -> None:
    tls = plinth_client.Tls.from_files(
        os.environ["PLINTH_CA"], os.environ["PLINTH_CERTIFICATE"], os.environ["PLINTH_PRIVATE_KEY"]
    )
    target = os.environ["PLINTH_TARGET"]
    channel = plinth_client.connect(target, api_key=os.environ["PLINTH_API_KEY"], tls=tls)

    me, call = auth_pb2_grpc.AuthServiceStub(channel).WhoAmI.with_call(
        auth_pb2.WhoAmIRequest(), timeout=10
    )
    check(me.module_id == "inventory", f"WhoAmI names the key's module, got {me.module_id!r}")
    check(me.certificate_module_id == "inventory", "WhoAmI names the certificate's module")
    echoed = dict(call.initial_metadata()).get("x-request-id", "")
    check(len(echoed) == 36, f"the server answers with the request id sent, got {echoed!r}")

    tenants = tenant_pb2_grpc.TenantServiceStub(channel)
    try:
        tenants.GetTenant(tenant_pb2.GetTenantRequest(id="not-a-uuid"), timeout=10)
        check(False, "GetTenant of a malformed id is refused")
    except grpc.RpcError as refusal:
        error = plinth_client.PlinthError.from_rpc_error(refusal)
        check(error.code == grpc.StatusCode.INVALID_ARGUMENT, f"INVALID_ARGUMENT, got {error}")
        check(error.reason == "ERROR_REASON_INVALID_ARGUMENT", f"the reason is read, got {error.reason!r}")
        fields = [violation.field for violation in error.field_violations]
        check(fields == ["id"], f"the violation names the id, got {fields}")

    stranger = plinth_client.connect(target, api_key="pk_not_a_key", tls=tls)
    try:
        auth_pb2_grpc.AuthServiceStub(stranger).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)
        check(False, "an unknown API key is refused")
    except grpc.RpcError as refusal:
        error = plinth_client.PlinthError.from_rpc_error(refusal)
        check(error.code == grpc.StatusCode.UNAUTHENTICATED, f"UNAUTHENTICATED, got {error}")
        check(error.reason == "ERROR_REASON_UNAUTHENTICATED", f"the reason is read, got {error.reason!r}")

    without_certificate = plinth_client.connect(
        target, api_key=os.environ["PLINTH_API_KEY"], tls=plinth_client.Tls(tls.ca)
    )
    try:
        auth_pb2_grpc.AuthServiceStub(without_certificate).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)
        check(False, "a client without a certificate is refused")
    except grpc.RpcError as refusal:
        check(refusal.code() == grpc.StatusCode.UNAVAILABLE, f"the handshake fails, got {refusal}")
    print("python client: ok")


if __name__ == "__main__":
    main()
