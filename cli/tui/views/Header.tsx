/**
 * Top lines: source and counts, then the filter line (or the line being edited).
 * @module
 */
import { Box, Text } from "ink";
import type { ReactNode } from "react";
import type { ViewModel } from "../model.ts";
import { fit } from "./text.ts";

export function Header({ vm, width }: { readonly vm: ViewModel; readonly width: number }) {
  const title = `adsrv inspect  ${vm.source}`;
  const room = Math.max(0, width - vm.summary.length - 2);
  let editLine: ReactNode;
  if (vm.mode === "filter") {
    editLine = (
      <Text>
        <Text color="cyan">filter /</Text> {vm.draft}
        <Text inverse> </Text>
      </Text>
    );
  } else if (vm.mode === "hour") {
    editLine = (
      <Text>
        <Text color="cyan">hour (0-23):</Text> {vm.draft}
        <Text inverse> </Text>
        {vm.notice === null ? null : <Text color="red"> {vm.notice}</Text>}
      </Text>
    );
  } else {
    const flags = [
      vm.liveOnly ? `live at ${String(vm.hour).padStart(2, "0")}h only` : "",
      vm.problemsOnly ? "problems only" : "",
    ]
      .filter((flag) => flag !== "")
      .join(", ");
    editLine = (
      <Text>
        <Text dimColor>filter:</Text> {vm.query === "" ? <Text dimColor>none</Text> : vm.query}
        {flags === "" ? null : <Text color="yellow"> [{flags}]</Text>}
      </Text>
    );
  }
  return (
    <Box flexDirection="column">
      <Box>
        <Text bold>{fit(title, room)}</Text>
        <Text> {vm.summary}</Text>
      </Box>
      {vm.rejected === null ? null : (
        <Text color="red" bold>
          ✗ the server would reject this document: {vm.rejected}
        </Text>
      )}
      <Box justifyContent="space-between">
        {editLine}
        <Text dimColor>{vm.position}</Text>
      </Box>
    </Box>
  );
}
