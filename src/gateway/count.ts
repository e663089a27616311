/**
 * Open client connections per uid, for `limits.connectionsPerUid`. A gateway of one process
 * counts its own ({@link LocalCount}); the processes of a group all ask its first process,
 * which keeps one count for all of them (src/cli/gateway-group.ts), so that together they
 * admit no more than the limit.
 */

/** The answer to {@link ConnectionCount.take}: counted or not, and how many were open before. */
export interface Taken {
  ok: boolean;
  open: number;
}

/** Where a gateway counts its connections per uid. */
export interface ConnectionCount {
  /**
   * Counts a new connection of `uid`, unless `cap` (when given) are open already. Answers at
   * once, or later when the count is another process's.
   */
  take(uid: number, cap: number | undefined): Taken | Promise<Taken>;
  /** A counted connection of `uid` has closed. */
  give(uid: number): void;
}

/** A count kept in this process. */
export class LocalCount implements ConnectionCount {
  readonly #open = new Map<number, number>();

  take(uid: number, cap: number | undefined): Taken {
    const open = this.#open.get(uid) ?? 0;
    if (cap !== undefined && open >= cap) return { ok: false, open };
    this.#open.set(uid, open + 1);
    return { ok: true, open };
  }

  give(uid: number): void {
    const n = (this.#open.get(uid) ?? 0) - 1;
    if (n > 0) this.#open.set(uid, n);
    else this.#open.delete(uid);
  }

  /** The connections of `uid` counted now. */
  open(uid: number): number {
    return this.#open.get(uid) ?? 0;
  }

  /** Every uid with connections counted, and how many. */
  entries(): IterableIterator<[number, number]> {
    return this.#open.entries();
  }
}
