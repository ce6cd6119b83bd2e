import { describe, expect, test } from "bun:test";
import {
  ConfigError,
  makeConfig,
  parseCount,
  parseListen,
  parsePositive,
  parseSource,
} from "../../src/config.ts";

describe("config parsers", () => {
  test.each([
    ["127.0.0.1:8080", "127.0.0.1", 8080],
    ["0.0.0.0:0", "0.0.0.0", 0],
    [":9000", "127.0.0.1", 9000],
    ["localhost:80", "localhost", 80],
    ["[::1]:8080", "::1", 8080],
  ])("listen %s", (raw, host, port) => expect(parseListen(raw)).toEqual({ host, port }));

  test.each(["8080", "host:", "host:99999", "a b:1", "[::1]", ""])("listen %p is refused", (raw) => {
    expect(() => parseListen(raw)).toThrow(ConfigError);
  });

  test("numbers", () => {
    expect(parsePositive("--refresh", "0.5")).toBe(0.5);
    for (const bad of ["0", "-1", "abc", "", "Infinity"])
      expect(() => parsePositive("--refresh", bad)).toThrow(ConfigError);
    expect(parseCount("--workers", "4")).toBe(4);
    for (const bad of ["0", "1.5", "-2", "two", ""])
      expect(() => parseCount("--workers", bad)).toThrow(/--workers/);
  });

  test("sources", () => {
    expect(parseSource("./catalog.json")).toBe("./catalog.json");
    expect(parseSource("https://campaigns.example/ads")).toBe("https://campaigns.example/ads");
    for (const bad of ["", "ftp://x/y", "file:///etc/passwd", "http://"])
      expect(() => parseSource(bad)).toThrow(ConfigError);
  });

  test("workers above 1 need a fixed port", () => {
    expect(() => makeConfig({ workers: 2, listen: { host: "127.0.0.1", port: 0 } })).toThrow(
      /fixed --listen port/,
    );
    expect(makeConfig({ workers: 2 }).workers).toBe(2);
  });
});
