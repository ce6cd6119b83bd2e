/**
 * The detail pane for the selected entry: an ad's fields and its window on a 24-hour bar with
 * the inspected hour marked, or an invalid entry's problem.
 * @module
 */
import { Box, Text } from "ink";
import type { ReactNode } from "react";
import type { ViewModel } from "../model.ts";
import { HOUR_RULER, hourCaret } from "./text.ts";

/** Rows the pane takes, border included. */
export const DETAIL_HEIGHT = 7;

export function Detail({ vm }: { readonly vm: ViewModel }) {
  const { detail } = vm;
  let body: ReactNode;
  if (detail === null) {
    body = <Text dimColor>nothing selected</Text>;
  } else if (detail.kind === "invalid") {
    const { issue } = detail;
    body = (
      <>
        <Text color="red" bold>
          ✗ entry #{detail.index}
          {issue.id === null ? "" : ` (id ${issue.id})`} is invalid: {issue.code}
        </Text>
        <Text color="red" wrap="truncate">
          {issue.field === null ? "" : `${issue.field}: `}
          {issue.message}
        </Text>
        <Text dimColor>the server skips this entry and serves the others</Text>
      </>
    );
  } else {
    const { ad } = detail;
    const hour = `${String(vm.hour).padStart(2, "0")}:00`;
    body = (
      <>
        <Text wrap="truncate">
          <Text bold>{ad.id}</Text>
          <Text dimColor> entry #{detail.index}</Text> {ad.country} · {ad.lang} · {detail.window} ·{" "}
          {detail.live ? (
            <Text color="green">live at {hour}</Text>
          ) : (
            <Text color="yellow">off at {hour}</Text>
          )}
        </Text>
        <Text wrap="truncate">
          <Text dimColor>video </Text>
          {ad.video_url}
        </Text>
        <Text dimColor>{HOUR_RULER}</Text>
        <Text color="green">{detail.bar}</Text>
        <Text color="cyan">{hourCaret(vm.hour)}</Text>
      </>
    );
  }
  return (
    <Box borderStyle="round" borderDimColor flexDirection="column" height={DETAIL_HEIGHT} paddingX={1}>
      {body}
    </Box>
  );
}
