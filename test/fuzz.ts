/**
 * Run counts for property tests: the CI default, or `ADSRV_FUZZ_RUNS` for a longer fuzz run
 * (`npm run fuzz`). A seed from `ADSRV_FUZZ_SEED` replays a failure fast-check reported.
 */
export function fuzz(defaultRuns: number): { numRuns: number; seed?: number } {
  const runs = Number(process.env.ADSRV_FUZZ_RUNS ?? defaultRuns);
  const seed = process.env.ADSRV_FUZZ_SEED;
  return {
    numRuns: Number.isFinite(runs) && runs > 0 ? runs : defaultRuns,
    ...(seed ? { seed: Number(seed) } : {}),
  };
}
