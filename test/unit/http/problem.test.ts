import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { PROBLEMS, problem, problemType } from "../../../src/http/problem.ts";

const docs = readFileSync(`${import.meta.dir}/../../../docs/errors.md`, "utf8");

test("every problem code is documented in docs/errors.md with its status, and nothing else is", () => {
  const documented = [...docs.matchAll(/^\|\s*`([a-z-]+)`\s*\|\s*(\d{3})\s*\|/gm)].map((m) => [
    m[1],
    Number(m[2]),
  ]);
  const table = Object.entries(PROBLEMS).map(([code, { status }]) => [code, status]);
  expect(documented.sort()).toEqual(table.sort());
});

test("a problem response is problem+json with the RFC 9457 members and the security headers", async () => {
  const res = problem("invalid-param", "country is required", { param: "country" });
  expect(res.status).toBe(400);
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  expect(res.headers.get("cache-control")).toBe("no-store");
  expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  expect(await res.json()).toEqual({
    type: problemType("invalid-param"),
    title: "Invalid request parameter",
    status: 400,
    detail: "country is required",
    param: "country",
  });
});
