import { afterAll, describe, expect, test } from "bun:test";
import { loadCatalog, terminalProblem } from "../../../cli/commands/inspect.ts";
import { fakeCampaignService, sampleAd } from "../../rig.ts";

const service = fakeCampaignService({
  ads: [sampleAd("a1"), sampleAd("a2", { country: "zz" }), sampleAd("a3", { lang: "fr-CA" })],
});

afterAll(async () => {
  await service.stop();
});

describe("inspect's catalog loading (the server's readSource + parseCatalog)", () => {
  test("an http source: valid and invalid entries in order", async () => {
    service.mode = "ok";
    const catalog = await loadCatalog(service.url);
    if (typeof catalog === "string") throw new Error(catalog);
    expect(catalog.source).toBe(service.url);
    expect(catalog.rows.map((row) => `${row.kind}:${row.index}`)).toEqual(["ad:0", "invalid:1", "ad:2"]);
    const third = catalog.rows[2];
    expect(third?.kind === "ad" ? third.ad.lang : "").toBe("fra");
  });

  test("a document every entry of which is invalid opens, marked rejected", async () => {
    service.mode = "all_invalid";
    const catalog = await loadCatalog(service.url);
    if (typeof catalog === "string") throw new Error(catalog);
    expect(catalog.rejected).toBe("all 2 entries are invalid");
  });

  test.each([
    ["500", "campaign service answered 500"],
    ["malformed", "is not a catalog: catalog is not JSON"],
    ["wrong_shape", 'is not a catalog: catalog must have an "ads" array'],
    ["redirect", "redirect (302) not followed"],
  ] as const)("mode %s: a message, no catalog", async (mode, message) => {
    service.mode = mode;
    const result = await loadCatalog(service.url);
    expect(typeof result).toBe("string");
    expect(result as string).toContain(message);
  });

  test("a missing file", async () => {
    expect(await loadCatalog("/nonexistent/catalog.json")).toBe(
      "cannot read /nonexistent/catalog.json: /nonexistent/catalog.json does not exist",
    );
  });
});

describe("terminal check", () => {
  test("needs both stdin and stdout to be terminals", () => {
    expect(terminalProblem(true, true)).toBeNull();
    expect(terminalProblem(false, true)).toContain("stdin is not a TTY");
    expect(terminalProblem(true, false)).toContain("stdout is not a TTY");
    expect(terminalProblem(false, false)).toContain("stdin and stdout are not a TTY");
  });
});
