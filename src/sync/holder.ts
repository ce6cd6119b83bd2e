/**
 * The one mutable reference to the live snapshot. Readers take `current` once per request;
 * the sync loop replaces it whole, so no request sees half an update.
 * @module
 */
import type { Snapshot } from "../catalog/snapshot.ts";

export class CatalogHolder {
  current: Snapshot | null = null;

  swap(next: Snapshot): Snapshot | null {
    const previous = this.current;
    this.current = next;
    return previous;
  }
}
