/**
 * openapi.json, statically: every schema compiles (JSON Schema 2020-12, ajv strict), every
 * reference resolves, every problem code of src/http/problem.ts is described with its status
 * and title, and what the modules produce (problem bodies, stats, VAST, decisions) fits the
 * schemas that describe it. The live contract test (a server answering generated requests)
 * is separate.
 */
import { describe, expect, test } from "bun:test";
import type { ValidateFunction } from "ajv/dist/2020.js";
import { PROBLEMS, type ProblemCode, problemBody, problemType } from "../../../src/http/problem.ts";
import { ALLOWED } from "../../../src/http/routes.ts";
import { createImpressionSigner } from "../../../src/impression/token.ts";
import { ServedStats } from "../../../src/stats/served.ts";
import { renderNoFill, renderVast } from "../../../src/vast/render.ts";
import {
  compile,
  deref,
  doc,
  isObj,
  type Json,
  METHODS,
  type Obj,
  resolve,
} from "../../contract/document.ts";

const components = doc.components as Obj;
const schemas = components.schemas as Obj;

/**
 * Codes the document describes ahead of the table (a route not wired yet). Each must be added
 * to PROBLEMS (and docs/errors.md) with this status when its route is.
 */
const PENDING: Readonly<Record<string, number>> = { "impression-expired": 410 };

/** Members each code's body carries besides type/title/status/detail (for sample bodies). */
const SAMPLE_EXTRA: Readonly<Record<string, Record<string, string>>> = {
  "invalid-param": { param: "country" },
  "no-fill": { reason: "outside_hours" },
};

/** Every value under `node` with its JSON pointer. */
function* walk(node: Json, pointer = ""): Generator<[string, Json]> {
  yield [pointer, node];
  if (Array.isArray(node))
    for (let i = 0; i < node.length; i++) yield* walk(node[i] as Json, `${pointer}/${i}`);
  else if (isObj(node))
    for (const [k, v] of Object.entries(node))
      yield* walk(v, `${pointer}/${k.replaceAll("~", "~0").replaceAll("/", "~1")}`);
}

/** The validator of a component schema (`components.schemas[name]`). */
function validatorFor(name: string): ValidateFunction {
  if (!isObj(schemas[name])) throw new Error(`no schema ${name}`);
  return compile({ $ref: `#/components/schemas/${name}` });
}
function check(name: string, value: unknown): void {
  const validate = validatorFor(name);
  const ok = validate(value);
  expect({ name, errors: ok ? null : validate.errors }).toEqual({ name, errors: null });
}

/** Every operation: [path, method, operation]. */
const operations: [string, string, Obj][] = Object.entries(doc.paths as Obj).flatMap(([path, item]) =>
  METHODS.filter((m) => isObj((item as Obj)[m])).map((m): [string, string, Obj] => [
    path,
    m,
    (item as Obj)[m] as Obj,
  ]),
);

/**
 * Every response: [where, status, response object (dereferenced)]. Those in
 * `components.responses` describe any path (`NotFound`: paths the document does not list).
 */
const STATUS_OF_COMPONENT: Readonly<Record<string, string>> = { NotFound: "404", MethodNotAllowed: "405" };
const allResponses: [string, string, Obj][] = [
  ...operations.flatMap(([path, , op]) =>
    Object.entries(op.responses as Obj).map(([status, r]): [string, string, Obj] => [
      path,
      status,
      deref(r) as Obj,
    ]),
  ),
  ...Object.entries((components.responses ?? {}) as Obj).map(([name, r]): [string, string, Obj] => [
    `#/components/responses/${name}`,
    STATUS_OF_COMPONENT[name] ?? "unknown",
    r as Obj,
  ]),
];

/** The problem codes a response's problem+json schema names (by `problem.<code>` refs). */
function problemCodesOf(response: Obj): string[] {
  const content = response.content;
  if (!isObj(content) || !isObj(content["application/problem+json"])) return [];
  const schema = (content["application/problem+json"] as Obj).schema as Json;
  const codes: string[] = [];
  for (const [, node] of walk(schema)) {
    if (isObj(node) && typeof node.$ref === "string") {
      const m = /^#\/components\/schemas\/problem\.(.+)$/.exec(node.$ref);
      if (m) codes.push(m[1] as string);
    }
  }
  return codes;
}

describe("openapi.json", () => {
  test("is OpenAPI 3.1 with unique operation ids and only resolvable references", () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    const ids = operations.map(([, , op]) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    const broken = [...walk(doc)].flatMap(([pointer, node]) =>
      isObj(node) && typeof node.$ref === "string" && resolve(node.$ref) === undefined
        ? [`${pointer}: ${node.$ref}`]
        : [],
    );
    expect(broken).toEqual([]);
    for (const [path, method, op] of operations) {
      expect({ path, method, responses: Object.keys(op.responses as Obj).length > 0 }).toEqual({
        path,
        method,
        responses: true,
      });
    }
  });

  test("every schema compiles with ajv (JSON Schema 2020-12, strict)", () => {
    let compiled = 0;
    for (const name of Object.keys(schemas)) {
      validatorFor(name);
      compiled++;
    }
    // Schemas of parameters, headers and media types, wherever they are (inline or in components).
    for (const [pointer, node] of walk(doc)) {
      if (!isObj(node) || !isObj(node.schema) || pointer.startsWith("/components/schemas")) continue;
      try {
        compile(node.schema);
      } catch (error) {
        throw new Error(`${pointer}/schema does not compile: ${(error as Error).message}`);
      }
      compiled++;
    }
    expect(compiled).toBeGreaterThan(40);
  });

  test("the security schemes are an API key header and a bearer JWT", () => {
    expect(components.securitySchemes).toMatchObject({
      ApiKey: { type: "apiKey", in: "header", name: "X-Api-Key" },
      BearerJWT: { type: "http", scheme: "bearer", bearerFormat: "JWT" },
    });
  });

  test("every route the server answers is documented", () => {
    const documented = Object.keys(doc.paths as Obj);
    for (const path of Object.keys(ALLOWED)) expect(documented).toContain(path);
  });

  test("the headers in the contract exist", () => {
    const headers = Object.keys(components.headers as Obj);
    for (const h of [
      "X-Request-Id",
      "Retry-After",
      "RateLimit",
      "RateLimit-Policy",
      "Adsrv-Catalog-Version",
    ]) {
      expect(headers).toContain(h);
    }
  });
});

describe("problem types in openapi.json", () => {
  const codes = Object.keys(PROBLEMS) as ProblemCode[];

  test.each(codes)(
    "%s is described with its status and title, and used by a response of that status",
    (code) => {
      const { status, title } = PROBLEMS[code];
      const schema = schemas[`problem.${code}`];
      expect(isObj(schema)).toBe(true);
      const props = (schema as Obj).properties as Obj;
      expect(props.type).toEqual({ const: problemType(code) });
      expect(props.status).toEqual({ const: status });
      expect(props.title).toEqual({ const: title });
      const users = allResponses.filter(([, , r]) => problemCodesOf(r).includes(code));
      expect(users.length).toBeGreaterThan(0);
      for (const [path, s] of users)
        expect({ path, code, status: s }).toEqual({ path, code, status: String(status) });
      // What the server actually sends for this code fits its schema and the shared one.
      const body = problemBody(code, "something went wrong", SAMPLE_EXTRA[code] ?? {});
      check(`problem.${code}`, body);
      check("Problem", body);
    },
  );

  test("nothing else is described, except codes pending in the table (with their status)", () => {
    const described = Object.keys(schemas)
      .filter((n) => n.startsWith("problem."))
      .map((n) => n.slice("problem.".length));
    const extra = described.filter((code) => !(code in PROBLEMS));
    const statusOf = (code: string) =>
      (((schemas[`problem.${code}`] as Obj).properties as Obj).status as Obj).const;
    expect(Object.fromEntries(extra.map((code) => [code, statusOf(code)]))).toEqual(
      Object.fromEntries(Object.entries(PENDING).filter(([code]) => !(code in PROBLEMS))),
    );
  });

  test("each problem+json response names only codes of its own status", () => {
    const wrong = allResponses.flatMap(([where, status, response]) =>
      problemCodesOf(response).flatMap((code) => {
        const declared = (((schemas[`problem.${code}`] as Obj).properties as Obj).status as Obj).const;
        return String(declared) === status ? [] : [`${where} ${status}: ${code} is ${declared}`];
      }),
    );
    expect(wrong).toEqual([]);
  });

  test("a problem schema rejects another code's body and unknown members", () => {
    expect(validatorFor("problem.no-fill")(problemBody("not-found", "x"))).toBe(false);
    expect(
      validatorFor("problem.no-fill")({
        ...problemBody("no-fill", "x", { reason: "outside_hours" }),
        extra: 1,
      }),
    ).toBe(false);
    expect(validatorFor("problem.no-fill")(problemBody("no-fill", "x", { reason: "nope" }))).toBe(false);
  });
});

describe("what the modules produce fits the document", () => {
  test("a decision with its impression URL fits Ad", () => {
    const signer = createImpressionSigner(new Uint8Array(32).fill(1), { ttlSeconds: 600 });
    const token = signer.sign({ adId: "ad-1", decidedAtMs: Date.UTC(2026, 0, 1), nonce: "abcdefghijklmnop" });
    const ad = {
      id: "ad-1",
      video_url: "https://cdn.example.com/a.mp4",
      impression_url: `https://ads.example.com/impression?t=${token}`,
    };
    check("Ad", ad);
    expect(validatorFor("Ad")({ ...ad, impression_url: "https://ads.example.com/impression?t=bad" })).toBe(
      false,
    );
    // The token also fits the `t` parameter's schema.
    const t = deref((components.parameters as Obj).t) as Obj;
    expect(compile(t.schema as Json)(token)).toBe(true);
  });

  test("stats snapshots fit Stats", () => {
    const stats = new ServedStats({ startedAtMs: Date.UTC(2026, 0, 1) });
    stats.served("ad-1", "us", "eng", 3);
    stats.impression("ad-1", "us", "eng", 3);
    stats.noFill("fr", "fra", 4, "outside_hours");
    check("Stats", JSON.parse(JSON.stringify(stats.snapshot(Date.UTC(2026, 0, 1, 5)))));
    check("Stats", JSON.parse(JSON.stringify(new ServedStats({ startedAtMs: 0 }).snapshot(0))));
  });

  test("VAST documents (ad and no fill) fit VastDocument", () => {
    check(
      "VastDocument",
      renderVast(
        { id: "a", video_url: "https://cdn.example.com/a.mp4" },
        { adServingId: "s", impressionUrl: "https://x/impression?t=a.b" },
      ),
    );
    check("VastDocument", renderNoFill("outside_hours"));
  });

  test("every example in the document fits its media type's schema", () => {
    let checked = 0;
    for (const [pointer, node] of walk(doc)) {
      if (!isObj(node) || !isObj(node.schema) || !isObj(node.examples)) continue;
      const validate = compile(node.schema);
      for (const [name, example] of Object.entries(node.examples)) {
        const ok = validate((example as Obj).value);
        expect({ at: `${pointer}/examples/${name}`, errors: ok ? null : validate.errors }).toEqual({
          at: `${pointer}/examples/${name}`,
          errors: null,
        });
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(3);
  });
});
