/**
 * A strict checker for the Prometheus text exposition format 0.0.4, for tests: every line must
 * be a HELP, TYPE or sample line; families are contiguous and typed before their samples;
 * histograms have ascending `le`, cumulative buckets, a `+Inf` bucket equal to `_count`, and a
 * `_sum`. Returns the problems found (empty when valid) and the parsed samples.
 * @module
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Parsed {
  readonly errors: string[];
  readonly samples: Sample[];
  readonly types: Map<string, string>;
  readonly help: Map<string, string>;
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL_NAME = "[a-zA-Z_][a-zA-Z0-9_]*";
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const VALUE = "(?:[+-]?Inf|NaN|[+-]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][+-]?\\d+)?)";
const HELP_RE = new RegExp(`^# HELP (${NAME}) ((?:[^\\\\\\n]|\\\\[\\\\n])*)$`);
const TYPE_RE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_RE = new RegExp(
  `^(${NAME})(?:\\{((?:${LABEL_NAME}=${LABEL_VALUE})(?:,${LABEL_NAME}=${LABEL_VALUE})*,?)?\\})? (${VALUE})(?: -?\\d+)?$`,
);
const LABEL_RE = new RegExp(`(${LABEL_NAME})=(${LABEL_VALUE})`, "g");

function unescapeLabel(quoted: string): string {
  return quoted.slice(1, -1).replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
}

function parseValue(text: string): number {
  if (text.endsWith("Inf")) return text.startsWith("-") ? -Infinity : Infinity;
  if (text === "NaN") return Number.NaN;
  return Number(text);
}

/** The family a sample name belongs to, given the declared types. */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const type = types.get(base);
      if (type === "histogram" || (type === "summary" && suffix !== "_bucket")) return base;
    }
  }
  return undefined;
}

export function parseExposition(text: string): Parsed {
  const errors: string[] = [];
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  if (!text.endsWith("\n")) errors.push("the exposition does not end with a line feed");
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const finished = new Set<string>();
  let current: string | undefined;
  const enter = (family: string, n: number): void => {
    if (current === family) return;
    if (current !== undefined) finished.add(current);
    if (finished.has(family)) errors.push(`line ${n}: family ${family} is not contiguous`);
    current = family;
  };

  lines.forEach((line, i) => {
    const n = i + 1;
    if (line.startsWith("#")) {
      const h = HELP_RE.exec(line);
      const t = TYPE_RE.exec(line);
      if (h !== null) {
        const name = h[1] as string;
        enter(name, n);
        if (help.has(name)) errors.push(`line ${n}: second HELP for ${name}`);
        help.set(name, h[2] as string);
      } else if (t !== null) {
        const name = t[1] as string;
        enter(name, n);
        if (types.has(name)) errors.push(`line ${n}: second TYPE for ${name}`);
        if (samples.some((s) => familyOf(s.name, new Map([[name, t[2] as string]])) === name)) {
          errors.push(`line ${n}: TYPE for ${name} after its samples`);
        }
        types.set(name, t[2] as string);
      } else if (/^# (HELP|TYPE) /.test(line)) {
        errors.push(`line ${n}: malformed ${line.slice(2, 6)} line: ${line}`);
      }
      return;
    }
    const m = SAMPLE_RE.exec(line);
    if (m === null) {
      errors.push(`line ${n}: not a valid sample line: ${JSON.stringify(line)}`);
      return;
    }
    const name = m[1] as string;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL_RE)) {
      const key = l[1] as string;
      if (key in labels) errors.push(`line ${n}: label ${key} repeated`);
      labels[key] = unescapeLabel(l[2] as string);
    }
    const family = familyOf(name, types);
    if (family === undefined) errors.push(`line ${n}: sample ${name} has no TYPE before it`);
    else enter(family, n);
    samples.push({ name, labels, value: parseValue(m[3] as string) });
  });

  // Histogram structure.
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const groups = new Map<string, { les: number[]; counts: number[]; sum?: number; count?: number }>();
    const key = (labels: Readonly<Record<string, string>>): string =>
      JSON.stringify(Object.entries(labels).filter(([k]) => k !== "le"));
    for (const s of samples) {
      if (s.name !== `${family}_bucket` && s.name !== `${family}_sum` && s.name !== `${family}_count`)
        continue;
      const g = groups.get(key(s.labels)) ?? { les: [], counts: [] };
      groups.set(key(s.labels), g);
      if (s.name === `${family}_bucket`) {
        const le = s.labels.le;
        if (le === undefined) errors.push(`${family}: bucket without le`);
        else {
          g.les.push(parseValue(le));
          g.counts.push(s.value);
        }
      } else if (s.name === `${family}_sum`) g.sum = s.value;
      else if (s.name === `${family}_count`) g.count = s.value;
    }
    for (const [labels, g] of groups) {
      const where = `${family}${labels}`;
      for (let i = 1; i < g.les.length; i++) {
        if (!((g.les[i] as number) > (g.les[i - 1] as number))) errors.push(`${where}: le not ascending`);
        if ((g.counts[i] as number) < (g.counts[i - 1] as number))
          errors.push(`${where}: buckets not cumulative`);
      }
      if (g.les[g.les.length - 1] !== Infinity) errors.push(`${where}: no +Inf bucket`);
      if (g.count === undefined || g.sum === undefined) errors.push(`${where}: _sum or _count missing`);
      else if (g.counts[g.counts.length - 1] !== g.count) errors.push(`${where}: +Inf bucket ≠ _count`);
    }
  }
  return { errors, samples, types, help };
}

/** The value of the one sample with this name and exactly these labels (undefined if none). */
export function sampleValue(
  parsed: Parsed,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  return parsed.samples.find(
    (s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want,
  )?.value;
}
