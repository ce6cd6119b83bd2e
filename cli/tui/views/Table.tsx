/**
 * The table of catalog entries: selection marker, live/invalid mark, id, country, language,
 * window and a 24-hour bar (the selected hour highlighted). Invalid entries show their problem.
 * @module
 */
import { Box, Text } from "ink";
import type { TableLine, ViewModel } from "../model.ts";
import { fit, HOUR_RULER } from "./text.ts";

/** Width of everything but the id column: marks, country, language, window, bar. */
const FIXED = 2 + 2 + 1 + 3 + 5 + 6 + 24;

/** The id column: as wide as the longest id, within what the terminal leaves. */
export function idWidth(width: number, longestId: number): number {
  return Math.max(8, Math.min(longestId, width - FIXED));
}

function Bar({ bar, hour }: { readonly bar: string; readonly hour: number }) {
  return (
    <Text>
      <Text color="green">{bar.slice(0, hour)}</Text>
      <Text color="green" inverse>
        {bar.slice(hour, hour + 1)}
      </Text>
      <Text color="green">{bar.slice(hour + 1)}</Text>
    </Text>
  );
}

function Line({
  line,
  hour,
  idw,
  width,
}: {
  readonly line: TableLine;
  readonly hour: number;
  readonly idw: number;
  readonly width: number;
}) {
  const marker = line.selected ? "› " : "  ";
  if (line.invalid) {
    return (
      <Text color="red" inverse={line.selected} wrap="truncate">
        {marker}✗ {fit(line.id, idw)} {fit(line.problem, Math.max(0, width - idw - 6))}
      </Text>
    );
  }
  return (
    <Text wrap="truncate">
      <Text inverse={line.selected} bold={line.selected}>
        {marker}
      </Text>
      <Text color="green">{line.live ? "● " : "  "}</Text>
      <Text inverse={line.selected}>{fit(line.id, idw)}</Text> {fit(line.country, 3)}
      {fit(line.lang, 5)}
      {fit(line.window, 6)}
      <Bar bar={line.bar} hour={hour} />
    </Text>
  );
}

export function Table({
  vm,
  width,
  height,
}: {
  readonly vm: ViewModel;
  readonly width: number;
  readonly height: number;
}) {
  const idw = idWidth(width, vm.longestId);
  return (
    <Box flexDirection="column" height={height + 1}>
      <Text dimColor wrap="truncate">
        {"    "}
        {fit("ID", idw)} {fit("CC", 3)}
        {fit("LANG", 5)}
        {fit("HOURS", 6)}
        {HOUR_RULER}
      </Text>
      {vm.lines.length === 0 ? (
        <Text dimColor>{"    "}no entries match the filter</Text>
      ) : (
        vm.lines.map((line) => <Line key={line.key} line={line} hour={vm.hour} idw={idw} width={width} />)
      )}
    </Box>
  );
}
