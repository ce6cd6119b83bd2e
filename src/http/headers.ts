/**
 * Headers every answer carries.
 * @module
 */
export const SECURITY_HEADERS = Object.freeze({
  "Cache-Control": "no-store",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Content-Security-Policy": "frame-ancestors 'none'",
});

export const JSON_HEADERS = Object.freeze({ ...SECURITY_HEADERS, "Content-Type": "application/json" });
