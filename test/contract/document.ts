/**
 * openapi.json as the contract tests read it: its operations with their parameters
 * (dereferenced, each with a compiled schema), and `checkResponse`, which lists every way an
 * answer departs from what the document says for that operation and status: undocumented
 * status, a missing required header, a header value outside its schema, a media type not
 * documented, a body its schema rejects (ajv, JSON Schema 2020-12), a body where none is
 * described.
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv2020, { type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Obj = { [key: string]: Json };

export const DOC_PATH = join(import.meta.dir, "../..", "openapi.json");
export const doc = JSON.parse(readFileSync(DOC_PATH, "utf8")) as Obj;
const components = doc.components as Obj;

export function isObj(value: Json | undefined): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The node a JSON pointer (`#/…`) names in the document, or undefined. */
export function resolve(pointer: string): Json | undefined {
  let node: Json | undefined = doc;
  for (const raw of pointer.replace(/^#\//, "").split("/")) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    node = isObj(node) ? node[key] : Array.isArray(node) ? node[Number(key)] : undefined;
  }
  return node;
}

/** Follows `$ref`s to the object they name. */
export function deref(node: Json | undefined): Json | undefined {
  let current = node;
  for (let hops = 0; isObj(current) && typeof current.$ref === "string"; hops++) {
    if (hops > 10) throw new Error("reference loop");
    const target = resolve(current.$ref);
    if (target === undefined) throw new Error(`unresolved reference ${current.$ref}`);
    current = target;
  }
  return current;
}

const SCHEMA_PREFIX = "urn:adsrv:contract:schemas:";

/** A copy whose component references point at the ids ajv knows the component schemas by. */
function forAjv(node: Json): Json {
  if (Array.isArray(node)) return node.map(forAjv);
  if (!isObj(node)) return node;
  const out: Obj = {};
  for (const [k, v] of Object.entries(node)) {
    out[k] =
      k === "$ref" && typeof v === "string" && v.startsWith("#/components/schemas/")
        ? `${SCHEMA_PREFIX}${v.slice("#/components/schemas/".length)}`
        : forAjv(v);
  }
  return out;
}

const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
addFormats(ajv);
for (const [name, schema] of Object.entries(components.schemas as Obj)) {
  ajv.addSchema(forAjv(schema) as object, `${SCHEMA_PREFIX}${name}`);
}
const compiled = new Map<string, ValidateFunction>();

/** A compiled validator for a schema found in the document (cached by its JSON text). */
export function compile(schema: Json): ValidateFunction {
  const key = JSON.stringify(schema);
  let validate = compiled.get(key);
  if (validate === undefined) {
    validate = ajv.compile(forAjv(schema) as object);
    compiled.set(key, validate);
  }
  return validate;
}

export interface Param {
  readonly name: string;
  readonly in: "query" | "header";
  readonly required: boolean;
  readonly schema: Obj;
  readonly validate: ValidateFunction;
}

export interface Operation {
  readonly path: string;
  readonly method: string;
  readonly operationId: string;
  readonly params: readonly Param[];
  /** Status → response object (dereferenced). */
  readonly responses: Readonly<Record<string, Obj>>;
  /** Whether the operation may take credentials (it lists a non-empty security requirement). */
  readonly secured: boolean;
}

export const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;

export const operations: readonly Operation[] = Object.entries(doc.paths as Obj).flatMap(([path, item]) =>
  METHODS.filter((m) => isObj((item as Obj)[m])).map((method): Operation => {
    const op = (item as Obj)[method] as Obj;
    const params = ((op.parameters ?? []) as Json[]).map((p): Param => {
      const param = deref(p) as Obj;
      const schema = param.schema as Obj;
      return {
        name: param.name as string,
        in: param.in as "query" | "header",
        required: param.required === true,
        schema,
        validate: compile(schema),
      };
    });
    const responses = Object.fromEntries(
      Object.entries(op.responses as Obj).map(([status, r]) => [status, deref(r) as Obj]),
    );
    const security = (op.security ?? doc.security ?? []) as Json[];
    const secured = security.some((req) => isObj(req) && Object.keys(req).length > 0);
    return { path, method, operationId: op.operationId as string, params, responses, secured };
  }),
);

/** The response components that describe any path (`NotFound`) or any method (`MethodNotAllowed`). */
export const NOT_FOUND = deref((components.responses as Obj).NotFound) as Obj;

/** What was received, read once (Bun empties headers after the exchange, so copy them). */
export interface Received {
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
}

export async function receive(response: Response): Promise<Received> {
  const headers = new Headers(response.headers);
  const body = await response.text();
  return { status: response.status, headers, body };
}

export interface Sent {
  readonly method: string;
  /** The X-Request-Id sent, if any, and whether it matched the parameter's pattern. */
  readonly requestId?: { readonly value: string; readonly valid: boolean };
}

function schemaErrors(validate: ValidateFunction, value: unknown): string | null {
  if (validate(value)) return null;
  return (validate.errors ?? [])
    .slice(0, 3)
    .map((e) => `${e.instancePath || "/"} ${e.message ?? "invalid"}`)
    .join("; ");
}

const JSON_TYPES = /^application\/([a-z.+-]+\+)?json$/;

/** Every way `got` departs from `response` (the documented response for its status). */
export function checkAgainst(response: Obj, got: Received, sent: Sent): string[] {
  const problems: string[] = [];
  // Headers: required ones present, every documented one within its schema.
  for (const [name, h] of Object.entries((response.headers ?? {}) as Obj)) {
    const header = deref(h) as Obj;
    const value = got.headers.get(name);
    if (value === null) {
      if (header.required === true) problems.push(`missing required header ${name}`);
      continue;
    }
    const errors = schemaErrors(compile(header.schema as Json), value);
    if (errors !== null) problems.push(`header ${name}: ${JSON.stringify(value)} ${errors}`);
  }
  // The document's promises for every answer (info.description): security headers, request id.
  if (got.headers.get("x-content-type-options") !== "nosniff")
    problems.push("X-Content-Type-Options is not nosniff");
  const rid = got.headers.get("x-request-id");
  if (sent.requestId?.valid && rid !== sent.requestId.value)
    problems.push(`X-Request-Id ${JSON.stringify(sent.requestId.value)} was not echoed (got ${rid})`);
  if (sent.requestId && !sent.requestId.valid && rid === sent.requestId.value)
    problems.push(`a malformed X-Request-Id was echoed: ${JSON.stringify(rid)}`);

  // Body: a documented media type and a body its schema accepts; none when none is described.
  const content = (response.content ?? null) as Obj | null;
  const type = got.headers.get("content-type");
  const media = type?.split(";")[0]?.trim().toLowerCase() ?? null;
  if (content === null || Object.keys(content).length === 0) {
    if (got.body !== "") problems.push(`a body where none is documented: ${got.body.slice(0, 80)}`);
    return problems;
  }
  if (media === null || !(media in content)) {
    problems.push(`Content-Type ${type} is not one of ${Object.keys(content).join(", ")}`);
    return problems;
  }
  if (sent.method === "HEAD") {
    if (got.body !== "") problems.push("HEAD answered with a body");
    return problems;
  }
  const schema = (content[media] as Obj).schema as Json;
  let value: unknown = got.body;
  if (JSON_TYPES.test(media)) {
    try {
      value = JSON.parse(got.body);
    } catch {
      problems.push(`${media} body is not JSON: ${got.body.slice(0, 80)}`);
      return problems;
    }
  } else if (media === "application/xml") {
    const root = /^(?:<\?xml[^>]*\?>\s*)?<([A-Za-z_][\w.:-]*)/.exec(got.body)?.[1];
    if (root !== "VAST") problems.push(`XML root element is ${root ?? "missing"}, not VAST`);
  }
  if (schema !== undefined) {
    const errors = schemaErrors(compile(schema), value);
    if (errors !== null) problems.push(`body (${media}) ${errors}: ${got.body.slice(0, 160)}`);
  }
  return problems;
}

/** Every way `got` departs from what `op` documents. */
export function checkResponse(op: Operation, got: Received, sent: Sent): string[] {
  const response = op.responses[String(got.status)];
  if (response === undefined) {
    return [
      `status ${got.status} is not documented for ${op.method.toUpperCase()} ${op.path} (documented: ${Object.keys(op.responses).join(", ")}): ${got.body.slice(0, 160)}`,
    ];
  }
  return checkAgainst(response, got, sent);
}
