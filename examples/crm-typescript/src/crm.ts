// CRM, a Plinth module in TypeScript.
//
// It publishes its manifest, serves the lifecycle callbacks (and gRPC
// health) over mTLS, registers an instance and heartbeats it, and serves
// its users a small HTTP API: `POST /contacts` creates a contact for the
// bearer of a Plinth access token who holds `crm:contact:write`, placed in
// the tenant's configured pipeline and written to the tenant's audit log;
// `GET /tenants` lists the tenants whose enablement it was told of.
//
// Environment:
//   PLINTH_URL                    the core, https://host:port
//   PLINTH_CA                     the CA of the core's and the module's certificates
//   PLINTH_CERTIFICATE, PLINTH_PRIVATE_KEY
//                                 the module's client certificate (names module crm)
//   PLINTH_API_KEY                a key of module crm
//   MODULE_SERVER_CERTIFICATE, MODULE_SERVER_PRIVATE_KEY
//                                 what its callback server presents to the core
//   MODULE_HOST                   the address it listens on and registers (127.0.0.1)
//
// Once serving it prints one JSON line: {"http": "host:port", "instance_id": ...}.
// It deregisters its instance on SIGTERM or SIGINT.

import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import {
  Code,
  type ServiceImpl,
  connectNodeAdapter,
  createClient,
  createPlinthTransport,
  fromJson,
  plinthError,
} from "@plinth/client";
import { AuditService, Outcome } from "@plinth/client/gen/plinth/audit/v1/audit_pb";
import { AuthService } from "@plinth/client/gen/plinth/auth/v1/auth_pb";
import { ModuleLifecycleService } from "@plinth/client/gen/plinth/module/v1/module_pb";
import { RbacService } from "@plinth/client/gen/plinth/rbac/v1/rbac_pb";
import {
  InstanceStatus,
  ModuleManifestSchema,
  ModuleRegistryService,
} from "@plinth/client/gen/plinth/registry/v1/registry_pb";
import { TenantService } from "@plinth/client/gen/plinth/tenant/v1/tenant_pb";

const MODULE = "crm";
const manifestJson = JSON.parse(readFileSync(new URL("../manifest.json", import.meta.url), "utf8"));
const manifest = fromJson(ModuleManifestSchema, manifestJson);
const env = process.env as Record<string, string>;
const host = env.MODULE_HOST ?? "127.0.0.1";
const ca = readFileSync(env.PLINTH_CA);

const transport = createPlinthTransport({
  baseUrl: env.PLINTH_URL,
  apiKey: env.PLINTH_API_KEY,
  tls: {
    ca,
    certificate: readFileSync(env.PLINTH_CERTIFICATE),
    privateKey: readFileSync(env.PLINTH_PRIVATE_KEY),
  },
  defaultTimeoutMs: 5_000,
});
const core = {
  auth: createClient(AuthService, transport),
  rbac: createClient(RbacService, transport),
  registry: createClient(ModuleRegistryService, transport),
  tenants: createClient(TenantService, transport),
  audit: createClient(AuditService, transport),
};

/** Registers this version; one already registered is immutable, so a restart finding it is fine. */
async function publish(): Promise<void> {
  try {
    await core.registry.registerModule({ manifest });
  } catch (error) {
    if (plinthError(error).code !== Code.AlreadyExists) {
      throw error;
    }
  }
}

const tenants = new Set<string>();

const lifecycle: Partial<ServiceImpl<typeof ModuleLifecycleService>> = {
  onTenantEnabling(request) {
    const config = JSON.parse(request.target?.config || "{}");
    if (!config.pipeline) {
      return { allow: false, reason: 'crm needs a pipeline: set "pipeline" in the tenant configuration' };
    }
    return { allow: true };
  },
  // Deliveries come at least once; keyed by tenant, a repeat changes nothing.
  onTenantEnabled(request) {
    tenants.add(request.target?.tenantId ?? "");
    return {};
  },
  onTenantDisabled(request) {
    tenants.delete(request.target?.tenantId ?? "");
    return {};
  },
};

// grpc.health.v1.Health/Check answered SERVING while the process serves:
// the registry probes it. The message is `status: SERVING` (field 1 = 1),
// framed as gRPC does (uncompressed, four bytes of length).
const HEALTH_CHECK = "/grpc.health.v1.Health/Check";
const SERVING = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]);

function callbackServer(): http2.Http2SecureServer {
  const callbacks = connectNodeAdapter({
    routes: (router) => router.service(ModuleLifecycleService, lifecycle),
  });
  const server = http2.createSecureServer(
    {
      key: readFileSync(env.MODULE_SERVER_PRIVATE_KEY),
      cert: readFileSync(env.MODULE_SERVER_CERTIFICATE),
      ca,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (request, response) => {
      if (request.url !== HEALTH_CHECK) {
        return callbacks(request, response);
      }
      response.writeHead(200, { "content-type": "application/grpc" });
      response.addTrailers({ "grpc-status": "0" });
      response.end(SERVING);
    },
  );
  return server;
}

class Refused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A contact created by the token's user, in the token's tenant. */
async function createContact(bearer: string, body: unknown): Promise<object> {
  const name = (body as { name?: unknown }).name;
  if (typeof name !== "string" || name.length === 0 || name.length > 64) {
    throw new Refused(400, "name: 1 to 64 characters");
  }
  let user;
  try {
    user = await core.auth.verifyToken({ accessToken: bearer });
  } catch (error) {
    if (plinthError(error).code === Code.Unauthenticated) {
      throw new Refused(401, "the token is not valid");
    }
    throw error;
  }
  const { allowed } = await core.rbac.check({
    tenantId: user.tenantId,
    userId: user.userId,
    permission: "crm:contact:write",
  });
  if (!allowed) {
    throw new Refused(403, "crm:contact:write is needed");
  }
  const { resolution } = await core.tenants.resolveModuleConfig({
    moduleId: MODULE,
    tenantId: user.tenantId,
  });
  const config = JSON.parse(resolution?.document ?? "{}");
  await core.audit.recordEvents({
    tenantId: user.tenantId,
    claimedUserId: user.userId,
    events: [
      {
        action: "crm.contact.created",
        resourceType: "contact",
        resourceId: name,
        outcome: Outcome.SUCCESS,
        details: { pipeline: config.pipeline },
      },
    ],
  });
  return { name, pipeline: config.pipeline, follow_up_days: config.follow_up_days };
}

function httpApi(): http.Server {
  return http.createServer((request, response) => {
    const answer = (status: number, body: object) => {
      const data = JSON.stringify(body);
      response.writeHead(status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(data),
      });
      response.end(data);
    };
    if (request.method === "GET" && request.url === "/tenants") {
      return answer(200, { tenants: [...tenants].sort() });
    }
    if (request.method !== "POST" || request.url !== "/contacts") {
      return answer(404, { error: "not found" });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= 4096) {
        chunks.push(chunk);
      }
    });
    request.on("end", async () => {
      try {
        const authorization = request.headers.authorization ?? "";
        if (size > 4096) {
          throw new Refused(413, "a small body");
        }
        if (!authorization.startsWith("Bearer ")) {
          throw new Refused(401, "a bearer token");
        }
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
        } catch {
          throw new Refused(400, "a JSON object");
        }
        if (typeof body !== "object" || body === null) {
          throw new Refused(400, "a JSON object");
        }
        answer(201, await createContact(authorization.slice("Bearer ".length), body));
      } catch (error) {
        if (error instanceof Refused) {
          return answer(error.status, { error: error.message });
        }
        const failure = plinthError(error);
        answer(502, { error: failure.message, reason: failure.reason });
      }
    });
  });
}

function listen(server: http.Server | http2.Http2SecureServer): Promise<number> {
  return new Promise((resolve) => server.listen(0, host, () => resolve((server.address() as AddressInfo).port)));
}

async function main(): Promise<void> {
  await publish();
  const callbacks = callbackServer();
  const port = await listen(callbacks);
  const registered = await core.registry.registerInstance({
    moduleId: MODULE,
    version: manifest.version,
    endpoint: `https://${host}:${port}`,
    instanceKey: `${host}:${port}`,
  });
  const instanceId = registered.instance?.instanceId ?? "";
  const heartbeat = () => core.registry.heartbeat({ instanceId, status: InstanceStatus.SERVING });
  // Serving from the first beat: the registry says STARTING until then, and
  // the core calls back only instances that serve.
  await heartbeat();
  const everyMs = Math.max((Number(registered.leaseTtl?.seconds ?? 30n) * 1000) / 3, 1000);
  const beating = setInterval(() => {
    heartbeat().catch((error) => console.error(`heartbeat failed: ${plinthError(error).message}`));
  }, everyMs);
  const api = httpApi();
  const apiPort = await listen(api);
  console.log(JSON.stringify({ http: `${host}:${apiPort}`, instance_id: instanceId }));

  const stop = async () => {
    clearInterval(beating);
    await core.registry.deregisterInstance({ instanceId });
    api.close();
    callbacks.close();
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

await main();
