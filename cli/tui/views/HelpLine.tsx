/**
 * The keyboard help line at the bottom.
 * @module
 */
import { Text } from "ink";
import type { ViewModel } from "../model.ts";

export function HelpLine({ vm }: { readonly vm: ViewModel }) {
  return (
    <Text dimColor wrap="truncate">
      {vm.help}
    </Text>
  );
}
