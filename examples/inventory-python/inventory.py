"""Inventory, a Plinth module in Python.

It publishes its manifest, serves the lifecycle callbacks (and gRPC health)
over mTLS, registers an instance and heartbeats it, and serves its users a
small HTTP API: `POST /counts` records a stock count for the bearer of a
Plinth access token who holds `inventory:stock:count`, judged against the
tenant's configuration and written to the tenant's audit log;
`GET /tenants` lists the tenants whose enablement it was told of.

Environment:
  PLINTH_TARGET                  the core, host:port
  PLINTH_CA                      the CA of the core's and the module's certificates
  PLINTH_CERTIFICATE, PLINTH_PRIVATE_KEY
                                 the module's client certificate (names module inventory)
  PLINTH_API_KEY                 a key of module inventory
  MODULE_SERVER_CERTIFICATE, MODULE_SERVER_PRIVATE_KEY
                                 what its callback server presents to the core
  MODULE_HOST                 the address it listens on and registers (127.0.0.1)

Once serving it prints one JSON line: {"http": "host:port", "instance_id": ...}.
It deregisters its instance on SIGTERM or SIGINT.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import os
import pathlib
import signal
import sys
import threading

import grpc
import plinth_client
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from plinth.audit.v1 import audit_pb2, audit_pb2_grpc
from plinth.auth.v1 import auth_pb2, auth_pb2_grpc
from plinth.module.v1 import module_pb2, module_pb2_grpc
from plinth.rbac.v1 import rbac_pb2, rbac_pb2_grpc
from plinth.registry.v1 import registry_pb2, registry_pb2_grpc
from plinth.tenant.v1 import tenant_pb2, tenant_pb2_grpc

MODULE = "inventory"
MANIFEST = pathlib.Path(__file__).with_name("manifest.json")
# Deadline of every call to the core, in seconds.
DEADLINE = 5


class Core:
    """The core's services, over one channel with the module's credentials."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.rbac = rbac_pb2_grpc.RbacServiceStub(channel)
        self.registry = registry_pb2_grpc.ModuleRegistryServiceStub(channel)
        self.tenants = tenant_pb2_grpc.TenantServiceStub(channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(channel)


def manifest() -> registry_pb2.ModuleManifest:
    return json_format.ParseDict(json.loads(MANIFEST.read_text()), registry_pb2.ModuleManifest())


def publish(core: Core) -> None:
    """Registers this version; a version already registered is immutable, so
    a restart finding it there is fine."""
    try:
        core.registry.RegisterModule(
            registry_pb2.RegisterModuleRequest(manifest=manifest()), timeout=DEADLINE
        )
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


class Lifecycle(module_pb2_grpc.ModuleLifecycleServiceServicer):
    """What the core tells the module about tenants."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: set[str] = set()

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted(self._tenants)

    def OnTenantEnabling(self, request, context):
        config = json.loads(request.target.config or "{}")
        if not config.get("warehouse"):
            return module_pb2.OnTenantEnablingResponse(
                allow=False,
                reason='inventory needs a warehouse: set "warehouse" in the tenant configuration',
            )
        return module_pb2.OnTenantEnablingResponse(allow=True)

    # Deliveries come at least once; keyed by tenant, a repeat changes nothing.
    def OnTenantEnabled(self, request, context):
        with self._lock:
            self._tenants.add(request.target.tenant_id)
        return module_pb2.OnTenantEnabledResponse()

    def OnTenantDisabled(self, request, context):
        with self._lock:
            self._tenants.discard(request.target.tenant_id)
        return module_pb2.OnTenantDisabledResponse()


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def record_count(core: Core, bearer: str, body: dict) -> dict:
    """A stock count by the token's user, in the token's tenant."""
    item, quantity = body.get("item"), body.get("quantity")
    if not isinstance(item, str) or not item or len(item) > 64:
        raise Refused(400, "item: 1 to 64 characters")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 0 <= quantity < 2**31:
        raise Refused(400, "quantity: a whole number from 0")
    try:
        user = core.auth.VerifyToken(auth_pb2.VerifyTokenRequest(access_token=bearer), timeout=DEADLINE)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise Refused(401, "the token is not valid") from error
        raise
    allowed = core.rbac.Check(
        rbac_pb2.CheckRequest(
            tenant_id=user.tenant_id, user_id=user.user_id, permission="inventory:stock:count"
        ),
        timeout=DEADLINE,
    ).allowed
    if not allowed:
        raise Refused(403, "inventory:stock:count is needed")
    resolved = core.tenants.ResolveModuleConfig(
        tenant_pb2.ResolveModuleConfigRequest(module_id=MODULE, tenant_id=user.tenant_id),
        timeout=DEADLINE,
    )
    config = json.loads(resolved.resolution.document)
    event = audit_pb2.EventInput(
        action="inventory.stock.counted",
        resource_type="item",
        resource_id=item,
        outcome=audit_pb2.OUTCOME_SUCCESS,
    )
    event.details.update({"quantity": quantity, "warehouse": config["warehouse"]})
    core.audit.RecordEvents(
        audit_pb2.RecordEventsRequest(
            tenant_id=user.tenant_id, events=[event], claimed_user_id=user.user_id
        ),
        timeout=DEADLINE,
    )
    return {
        "item": item,
        "quantity": quantity,
        "warehouse": config["warehouse"],
        "low_stock": quantity < config["low_stock_threshold"],
    }


def http_api(core: Core, lifecycle: Lifecycle, host: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/tenants":
                return self.answer(404, {"error": "not found"})
            self.answer(200, {"tenants": lifecycle.tenants()})

        def do_POST(self) -> None:
            if self.path != "/counts":
                return self.answer(404, {"error": "not found"})
            authorization = self.headers.get("authorization", "")
            try:
                length = int(self.headers.get("content-length") or 0)
                if not 0 <= length <= 4096:
                    raise Refused(413, "a body of at most 4 KiB")
                if not authorization.startswith("Bearer "):
                    raise Refused(401, "a bearer token")
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise Refused(400, "a JSON object")
                self.answer(201, record_count(core, authorization[len("Bearer "):], body))
            except Refused as refusal:
                self.answer(refusal.status, {"error": str(refusal)})
            except ValueError:  # a malformed length or body (JSONDecodeError)
                self.answer(400, {"error": "a JSON object with its length"})
            except grpc.RpcError as error:
                failure = plinth_client.PlinthError.from_rpc_error(error)
                self.answer(502, {"error": str(failure), "reason": failure.reason})

        def log_message(self, format: str, *args) -> None:
            pass

    return http.server.ThreadingHTTPServer((host, 0), Handler)


def callback_server(lifecycle: Lifecycle, host: str, ca: bytes) -> tuple[grpc.Server, int]:
    """The lifecycle callbacks and health, over TLS that asks the core for
    its certificate."""
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8))
    module_pb2_grpc.add_ModuleLifecycleServiceServicer_to_server(lifecycle, server)
    serving = health.HealthServicer()
    serving.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(serving, server)
    identity = (
        pathlib.Path(os.environ["MODULE_SERVER_PRIVATE_KEY"]).read_bytes(),
        pathlib.Path(os.environ["MODULE_SERVER_CERTIFICATE"]).read_bytes(),
    )
    credentials = grpc.ssl_server_credentials(
        [identity], root_certificates=ca, require_client_auth=True
    )
    port = server.add_secure_port(f"{host}:0", credentials)
    server.start()
    return server, port


def main() -> None:
    host = os.environ.get("MODULE_HOST", "127.0.0.1")
    tls = plinth_client.Tls.from_files(
        os.environ["PLINTH_CA"], os.environ["PLINTH_CERTIFICATE"], os.environ["PLINTH_PRIVATE_KEY"]
    )
    core = Core(
        plinth_client.connect(os.environ["PLINTH_TARGET"], api_key=os.environ["PLINTH_API_KEY"], tls=tls)
    )
    publish(core)
    lifecycle = Lifecycle()
    callbacks, port = callback_server(lifecycle, host, tls.ca)
    registered = core.registry.RegisterInstance(
        registry_pb2.RegisterInstanceRequest(
            module_id=MODULE,
            version=manifest().version,
            endpoint=f"https://{host}:{port}",
            instance_key=f"{host}:{port}",
        ),
        timeout=DEADLINE,
    )
    instance_id = registered.instance.instance_id
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    def heartbeat() -> None:
        core.registry.Heartbeat(
            registry_pb2.HeartbeatRequest(
                instance_id=instance_id, status=registry_pb2.INSTANCE_STATUS_SERVING
            ),
            timeout=DEADLINE,
        )

    def keep_heartbeating() -> None:
        every = max(registered.lease_ttl.ToTimedelta().total_seconds() / 3, 1)
        while not stopping.wait(every):
            try:
                heartbeat()
            except grpc.RpcError as error:
                failure = plinth_client.PlinthError.from_rpc_error(error)
                print(f"heartbeat failed: {failure}", file=sys.stderr, flush=True)

    # Serving from the first beat: the registry says STARTING until then,
    # and the core calls back only instances that serve.
    heartbeat()
    threading.Thread(target=keep_heartbeating, daemon=True).start()
    api = http_api(core, lifecycle, host)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    print(json.dumps({"http": "%s:%d" % api.server_address, "instance_id": instance_id}), flush=True)

    stopping.wait()
    core.registry.DeregisterInstance(
        registry_pb2.DeregisterInstanceRequest(instance_id=instance_id), timeout=DEADLINE
    )
    api.shutdown()
    callbacks.stop(grace=2).wait()


if __name__ == "__main__":
    main()
