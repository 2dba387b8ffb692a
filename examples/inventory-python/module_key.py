"""Prints a new API key of module inventory, made with the operator's
bootstrap key and certificate (the README's "Write a module" setup: certs/
and data/ of the repository's root, the core at PLINTH_TARGET)."""

import os
import pathlib

import plinth_client
from plinth.auth.v1 import auth_pb2, auth_pb2_grpc

certs = pathlib.Path(os.environ.get("PLINTH_CERTS", "certs"))
channel = plinth_client.connect(
    os.environ.get("PLINTH_TARGET", "127.0.0.1:50051"),
    api_key=pathlib.Path("data/bootstrap-api-key").read_text().strip(),
    tls=plinth_client.Tls.from_files(
        str(certs / "ca.pem"), str(certs / "operator.pem"), str(certs / "operator.key")
    ),
)
created = auth_pb2_grpc.AuthServiceStub(channel).CreateApiKey(
    auth_pb2.CreateApiKeyRequest(name="inventory example", module_id="inventory"), timeout=10
)
print(created.secret)
