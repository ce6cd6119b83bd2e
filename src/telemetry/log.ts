/**
 * Structured logs: one JSON object per line on stdout (or plain text with `format: "text"`).
 * Callers pass fields; user input must already be cut and escaped by the caller's choice of
 * fields (strings are JSON-escaped here and truncated to 256 characters).
 * @module
 */
export type Level = "debug" | "info" | "warn" | "error";
export type Fields = Readonly<Record<string, string | number | boolean | null | undefined>>;

const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const MAX_VALUE = 256;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** Whether lines of this level are written (check before building costly fields). */
  enabled(level: Level): boolean;
}

export interface LoggerOptions {
  readonly level?: Level;
  readonly format?: "json" | "text";
  readonly write?: (line: string) => void;
  readonly now?: () => number;
  /** Added to every line (e.g. the worker number). */
  readonly base?: Fields;
}

function clip(value: Fields[string]): Fields[string] {
  return typeof value === "string" && value.length > MAX_VALUE ? `${value.slice(0, MAX_VALUE)}…` : value;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const min = RANK[options.level ?? "info"];
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const now = options.now ?? Date.now;
  const text = options.format === "text";
  const base = options.base ?? {};
  const emit = (level: Level, msg: string, fields: Fields = {}): void => {
    if (RANK[level] < min) return;
    const record: Record<string, Fields[string]> = { time: new Date(now()).toISOString(), level, msg };
    for (const [k, v] of Object.entries(base)) record[k] = clip(v);
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) record[k] = clip(v);
    if (text) {
      const rest = Object.entries(record)
        .filter(([k]) => k !== "time" && k !== "level" && k !== "msg")
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(" ");
      write(`${record.time} ${level.toUpperCase()} ${JSON.stringify(msg)}${rest ? ` ${rest}` : ""}\n`);
    } else {
      write(`${JSON.stringify(record)}\n`);
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    enabled: (level) => RANK[level] >= min,
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });
