/**
 * Data the admin server is fed from outside (the served-ad counters of `/stats`).
 * @module
 */

/** Served and impression counts. */
export interface ServedCounts {
  readonly served: number;
  readonly impressions: number;
}

/** Served and impression counts by country (ISO 3166-1 alpha-2, lower case) and by ad id. */
export interface ServedStats {
  readonly byCountry: Record<string, ServedCounts>;
  readonly byAd: Record<string, ServedCounts>;
}
