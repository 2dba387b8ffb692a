// Plinth's TypeScript client: a Connect-ES gRPC transport that carries the
// caller's credentials, and errors that carry Plinth's stable reason.
//
//   import { createClient } from "@connectrpc/connect";
//   import { RbacService } from "@plinth/client/gen/plinth/rbac/v1/rbac_pb";
//   import { createPlinthTransport, plinthError } from "@plinth/client";
//
//   const transport = createPlinthTransport({
//     baseUrl: "https://core.example:50051",
//     apiKey: process.env.PLINTH_API_KEY,
//     tls: { ca, certificate, privateKey },
//   });
//   const rbac = createClient(RbacService, transport);
//
// The messages and service descriptors under gen/ are generated; this file
// is the only hand-written part.

import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

// One copy of Connect and protobuf-es for a module and this package: the
// generated descriptors and the transport come from here, so whatever uses
// them should too.
export { Code, ConnectError, createClient } from "@connectrpc/connect";
export type { ServiceImpl } from "@connectrpc/connect";
export { connectNodeAdapter } from "@connectrpc/connect-node";
export { create, fromJson, toJson } from "@bufbuild/protobuf";

export const API_KEY_HEADER = "x-api-key";
export const REQUEST_ID_HEADER = "x-request-id";

export interface Tls {
  /** The CA that signed the server's certificate (PEM). */
  ca: string | Buffer;
  /** For mTLS: the client's certificate chain and private key (PEM). */
  certificate?: string | Buffer;
  privateKey?: string | Buffer;
  /** The name the server's certificate must carry, when not the URL's host. */
  serverName?: string;
}

export interface PlinthTransportOptions {
  /** "https://host:port" with `tls`, "http://host:port" without. */
  baseUrl: string;
  apiKey?: string;
  tls?: Tls;
  /** Deadline of calls that set none. */
  defaultTimeoutMs?: number;
}

/** A gRPC transport over HTTP/2 with the API key and a request id on every call. */
export function createPlinthTransport(options: PlinthTransportOptions): Transport {
  const headers: Interceptor = (next) => (request) => {
    if (options.apiKey !== undefined && !request.header.has(API_KEY_HEADER)) {
      request.header.set(API_KEY_HEADER, options.apiKey);
    }
    if (!request.header.has(REQUEST_ID_HEADER)) {
      request.header.set(REQUEST_ID_HEADER, randomUUID());
    }
    return next(request);
  };
  const tls = options.tls;
  return createGrpcTransport({
    baseUrl: options.baseUrl,
    interceptors: [headers],
    defaultTimeoutMs: options.defaultTimeoutMs,
    nodeOptions:
      tls === undefined
        ? undefined
        : { ca: tls.ca, cert: tls.certificate, key: tls.privateKey, servername: tls.serverName },
  });
}

export interface FieldViolation {
  field: string;
  description: string;
}

/** A refused or failed call. Branch on `reason`, never on `message`. */
export interface PlinthError {
  code: Code;
  message: string;
  /** One of `plinth.errors.v1.ErrorReason`'s names, from `google.rpc.ErrorInfo`. */
  reason?: string;
  metadata: Record<string, string>;
  fieldViolations: FieldViolation[];
}

/** What a call's error says, read from its `google.rpc` details. */
export function plinthError(error: unknown): PlinthError {
  const connectError = ConnectError.from(error);
  const found: PlinthError = {
    code: connectError.code,
    message: connectError.rawMessage,
    metadata: {},
    fieldViolations: [],
  };
  for (const detail of connectError.details) {
    if (!("type" in detail)) {
      continue;
    }
    if (detail.type === "google.rpc.ErrorInfo") {
      readErrorInfo(detail.value, found);
    } else if (detail.type === "google.rpc.BadRequest") {
      for (const violation of fieldsOf(detail.value, 1)) {
        const [field, description] = [stringOf(violation, 1), stringOf(violation, 2)];
        found.fieldViolations.push({ field, description });
      }
    }
  }
  return found;
}

// google.rpc's messages are read by field number: they are not part of the
// generated API, and three fields do not justify generating them.

function readErrorInfo(bytes: Uint8Array, into: PlinthError): void {
  into.reason = stringOf(bytes, 1);
  for (const entry of fieldsOf(bytes, 3)) {
    into.metadata[stringOf(entry, 1)] = stringOf(entry, 2);
  }
}

/** Every length-delimited value of field `number`. */
function fieldsOf(bytes: Uint8Array, number: number): Uint8Array[] {
  const reader = new BinaryReader(bytes);
  const values: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === number && wireType === WireType.LengthDelimited) {
      values.push(reader.bytes());
    } else {
      reader.skip(wireType);
    }
  }
  return values;
}

function stringOf(bytes: Uint8Array, number: number): string {
  const values = fieldsOf(bytes, number);
  return values.length === 0 ? "" : new TextDecoder().decode(values[values.length - 1]);
}
