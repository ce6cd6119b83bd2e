/**
 * The inspector screen: header, table, detail pane and help line over one view-model.
 * State lives in a reducer (model.ts); keys come through `useInspectorKeys`; the table fits
 * the terminal height (or the `size` prop, for tests and examples).
 * @module
 */
import { Box, useWindowSize } from "ink";
import { useEffect, useReducer } from "react";
import { useInspectorKeys } from "./hooks/useInspectorKeys.ts";
import { type Catalog, initialState, reduce, viewModel } from "./model.ts";
import { DETAIL_HEIGHT, Detail } from "./views/Detail.tsx";
import { Header } from "./views/Header.tsx";
import { HelpLine } from "./views/HelpLine.tsx";
import { Table } from "./views/Table.tsx";

export interface AppProps {
  readonly catalog: Catalog;
  /** The UTC hour the inspector starts at. */
  readonly hour: number;
  /** Fixed screen size; the terminal's by default. */
  readonly size?: { readonly columns: number; readonly rows: number };
}

/** Table rows that fit: the screen minus header (2–3), table heading, detail pane and help. */
export function pageSizeFor(rows: number, rejected: boolean): number {
  return Math.max(1, rows - (rejected ? 3 : 2) - 1 - DETAIL_HEIGHT - 1 - 1);
}

export function App({ catalog, hour, size }: AppProps) {
  const terminal = useWindowSize();
  const { columns, rows } = size ?? terminal;
  const pageSize = pageSizeFor(rows, catalog.rejected !== null);
  const [state, dispatch] = useReducer(reduce, undefined, () => initialState(catalog, hour, pageSize));
  useEffect(() => {
    if (state.pageSize !== pageSize) dispatch({ type: "resize", pageSize });
  }, [pageSize, state.pageSize]);
  useInspectorKeys(state.quit, dispatch);
  const vm = viewModel(state);
  const width = Math.max(40, columns - 1);
  return (
    <Box flexDirection="column" width={width}>
      <Header vm={vm} width={width} />
      <Table vm={vm} width={width} height={state.pageSize} />
      <Detail vm={vm} />
      <HelpLine vm={vm} />
    </Box>
  );
}
