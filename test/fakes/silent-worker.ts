/** A catalog worker that takes requests and never answers (test/unit/catalog/offthread.test.ts). */
declare const self: Worker;
self.onmessage = () => {};
