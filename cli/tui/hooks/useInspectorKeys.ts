/**
 * Keyboard input: forwards ink's key presses to the inspector's reducer (the key map itself is
 * pure, in model.ts) and exits the ink app once the state says so.
 * @module
 */
import { useApp, useInput } from "ink";
import { useEffect } from "react";
import type { KeyFlags } from "../model.ts";

/** Sends every key press to `dispatch`; exits the ink app when `quit` turns true. */
export function useInspectorKeys(
  quit: boolean,
  dispatch: (press: { readonly type: "key"; readonly input: string; readonly key: KeyFlags }) => void,
): void {
  const { exit } = useApp();
  useInput((input, key) => dispatch({ type: "key", input, key }));
  useEffect(() => {
    if (quit) exit();
  }, [quit, exit]);
}
