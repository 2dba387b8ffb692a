// The built client against a real core over mTLS (run by the Rust test
// `clients::the_typescript_client_*`, which starts the core and writes the
// certificates): credentials on every call, refusals read with their reason.
//
// Environment: PLINTH_URL (https://host:port), PLINTH_CA, PLINTH_CERTIFICATE,
// PLINTH_PRIVATE_KEY (PEM files), PLINTH_API_KEY (a key of module
// "inventory", the module the certificate names).

import { readFileSync } from "node:fs";
import { Code, createClient } from "@connectrpc/connect";
import { createPlinthTransport, plinthError } from "../dist/index.js";
import { AuthService } from "../dist/gen/plinth/auth/v1/auth_pb.js";
import { TenantService } from "../dist/gen/plinth/tenant/v1/tenant_pb.js";

function check(condition, what) {
  if (!condition) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

const env = process.env;
const tls = {
  ca: readFileSync(env.PLINTH_CA),
  certificate: readFileSync(env.PLINTH_CERTIFICATE),
  privateKey: readFileSync(env.PLINTH_PRIVATE_KEY),
};
const transport = createPlinthTransport({
  baseUrl: env.PLINTH_URL,
  apiKey: env.PLINTH_API_KEY,
  tls,
  defaultTimeoutMs: 10_000,
});

let echoed = "";
const me = await createClient(AuthService, transport).whoAmI(
  {},
  { onHeader: (headers) => (echoed = headers.get("x-request-id") ?? "") },
);
check(me.moduleId === "inventory", `WhoAmI names the key's module, got ${me.moduleId}`);
check(me.certificateModuleId === "inventory", "WhoAmI names the certificate's module");
check(echoed.length === 36, `the server answers with the request id sent, got ${echoed}`);

async function refusal(call) {
  try {
    await call();
  } catch (error) {
    return plinthError(error);
  }
  check(false, "the call is refused");
}

const malformed = await refusal(() =>
  createClient(TenantService, transport).getTenant({ key: { case: "id", value: "not-a-uuid" } }),
);
check(malformed.code === Code.InvalidArgument, `INVALID_ARGUMENT, got ${malformed.code}`);
check(malformed.reason === "ERROR_REASON_INVALID_ARGUMENT", `the reason is read, got ${malformed.reason}`);
const fields = malformed.fieldViolations.map((violation) => violation.field);
check(JSON.stringify(fields) === '["id"]', `the violation names the id, got ${fields}`);

const stranger = createPlinthTransport({ baseUrl: env.PLINTH_URL, apiKey: "pk_not_a_key", tls });
const unknownKey = await refusal(() => createClient(AuthService, stranger).whoAmI({}));
check(unknownKey.code === Code.Unauthenticated, `UNAUTHENTICATED, got ${unknownKey.code}`);
check(unknownKey.reason === "ERROR_REASON_UNAUTHENTICATED", `the reason is read, got ${unknownKey.reason}`);

const anonymous = createPlinthTransport({
  baseUrl: env.PLINTH_URL,
  apiKey: env.PLINTH_API_KEY,
  tls: { ca: tls.ca },
});
const handshake = await refusal(() => createClient(AuthService, anonymous).whoAmI({}));
check(handshake.reason === undefined, "a client without a certificate gets no answer from Plinth");
console.log("typescript client: ok");
