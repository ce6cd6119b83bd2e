/** The test rig's line reader: what one call reads past its match is there for the next. */
import { expect, test } from "bun:test";
import { readUntil } from "../rig.ts";

test("readUntil keeps the lines read past a match for the next call on the stream", async () => {
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode("listening\nbuilding\nlo"));
      controller.enqueue(new TextEncoder().encode("aded\n"));
      controller.close();
    },
  });
  const seen: string[] = [];
  expect(await readUntil(stream, (l) => l === "listening", seen)).toBe("listening");
  expect(await readUntil(stream, (l) => l === "loaded", seen)).toBe("loaded");
  expect(seen).toEqual(["listening", "building", "loaded"]);
});
