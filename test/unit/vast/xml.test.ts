import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { cdata, escapeAttr, escapeText, toAnyUri } from "../../../src/vast/xml.ts";

describe("toAnyUri", () => {
  test("usual URLs come back unchanged", () => {
    for (const url of [
      "https://cdn.example.com/v/1.mp4",
      "http://127.0.0.1:8080/impression?t=eyJh.c2ln_-",
      "https://a.example/x;y=1?a=b&c=d,e:f@g/h?i",
      "https://[2001:db8::1]:8443/v.mp4",
      "https://u:p@h.example/p#frag/x?y",
      "https://h.example/%41%2f",
    ]) {
      expect(toAnyUri(url)).toBe(url);
    }
  });

  test("characters outside RFC 3986 are percent-encoded", () => {
    expect(toAnyUri('https://h/a b<>"{}|\\^`')).toBe("https://h/a%20b%3C%3E%22%7B%7D%7C%5C%5E%60");
    expect(toAnyUri("https://h/vidéo")).toBe("https://h/vid%C3%A9o");
    expect(toAnyUri("https://h/?q=%zz&r=%")).toBe("https://h/?q=%25zz&r=%25");
    expect(toAnyUri("https://h/a#b#c")).toBe("https://h/a#b%23c");
    expect(toAnyUri("https://h/e?code=[ERRORCODE]")).toBe("https://h/e?code=%5BERRORCODE%5D");
    expect(toAnyUri("https://h/\uD800x")).toBe("https://h/%EF%BF%BDx");
    expect(toAnyUri("https://h/\u0007")).toBe("https://h/%07");
  });

  test("the authority: ports, user info, IP literals, stray brackets and colons", () => {
    expect(toAnyUri("https://h:/x")).toBe("https://h/x");
    expect(toAnyUri("https://[::1]:/x")).toBe("https://[::1]/x");
    expect(toAnyUri("https://a@b@c/")).toBe("https://a%40b@c/");
    expect(toAnyUri("https://a:b:80/")).toBe("https://a%3Ab:80/");
    expect(toAnyUri("https://[::1/x")).toBe("https://%5B%3A:1/x"); // ":1" reads as a port
    expect(toAnyUri("https://h]x/")).toBe("https://h%5Dx/");
  });

  test("relative references never read as a scheme", () => {
    expect(toAnyUri("1a:b/c")).toBe("1a%3Ab/c");
    expect(toAnyUri("a/b:c")).toBe("a/b:c");
    expect(toAnyUri("")).toBe("");
  });

  test("idempotent (fast-check)", () => {
    const dense = fc.string({ unit: fc.constantFrom(..."%[]#:@/?&= <>é\uD800aZ09"), maxLength: 24 });
    fc.assert(
      fc.property(
        fc.oneof(
          dense,
          dense.map((s) => `https://${s}`),
          fc.string({ unit: "binary" }),
        ),
        (s) => {
          const once = toAnyUri(s);
          expect(toAnyUri(once)).toBe(once);
          expect(once).toMatch(/^[A-Za-z0-9\-._~!$&'()*+,;=:@/?#[\]%]*$/);
        },
      ),
      { numRuns: 2000, seed: 11 },
    );
  });
});

describe("XML escaping", () => {
  test("text, attributes, CDATA", () => {
    expect(escapeText(`a&<>"'`)).toBe(`a&amp;&lt;&gt;"'`);
    expect(escapeAttr(`a&<>"'\t\n\r`)).toBe(`a&amp;&lt;&gt;&quot;'&#9;&#10;&#13;`);
    expect(cdata("a]]>b")).toBe("<![CDATA[a]]]]><![CDATA[>b]]>");
    expect(cdata("plain")).toBe("<![CDATA[plain]]>");
  });

  test("characters XML 1.0 cannot carry become U+FFFD; valid pairs stay", () => {
    expect(escapeText("a\u0000b\u001Fc\uFFFEd\uD800e")).toBe("a\uFFFDb\uFFFDc\uFFFDd\uFFFDe");
    expect(escapeText("\t\n\r😀")).toBe("\t\n\r😀");
    expect(escapeAttr("\uDC00")).toBe("\uFFFD");
    expect(cdata("\u0001")).toBe("<![CDATA[\uFFFD]]>");
  });
});
