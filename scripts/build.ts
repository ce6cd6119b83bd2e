/**
 * Compiles the single executable `dist/adsrv`.
 *
 *   bun scripts/build.ts [--outfile dist/adsrv]
 *
 * The executable does not read `.env` or `bunfig.toml` from its working directory (a hostile
 * file there must not change its behaviour), and ink's optional `react-devtools-core` import is
 * stubbed: `--compile` cannot bundle it and `--external` only moves the failure to start-up.
 * @module
 */
import type { BunPlugin } from "bun";

const args = process.argv.slice(2);
const outIndex = args.indexOf("--outfile");
const outfile = outIndex >= 0 ? (args[outIndex + 1] ?? "dist/adsrv") : "dist/adsrv";

const stubDevtools: BunPlugin = {
  name: "stub-react-devtools-core",
  setup(build) {
    build.onResolve({ filter: /^react-devtools-core$/ }, () => ({
      path: "react-devtools-core",
      namespace: "stub",
    }));
    build.onLoad({ filter: /.*/, namespace: "stub" }, () => ({
      contents: "export default { initialize() {}, connectToDevTools() {} };",
      loader: "js",
    }));
  },
};

const started = performance.now();
const result = await Bun.build({
  // The catalog worker is its own entry point: `new Worker(url)` finds it in the executable.
  entrypoints: [`${import.meta.dir}/../cli/main.ts`, `${import.meta.dir}/../src/catalog/worker.ts`],
  compile: {
    outfile,
    autoloadDotenv: false,
    autoloadBunfig: false,
    // A header block over 8 KiB gets 431 before our code runs.
    execArgv: ["--max-http-header-size=8192"],
  },
  minify: true,
  // The subcommands are imported on demand (cli/main.ts): split into chunks, `adsrv serve` loads
  // none of the tools' code (without splitting every module's functions are created at start).
  splitting: true,
  sourcemap: "none",
  plugins: [stubDevtools],
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
console.log(`built ${outfile} in ${Math.round(performance.now() - started)} ms`);
