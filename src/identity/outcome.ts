/**
 * An attribute value, or the reason it could not be had. `absent` marks an attribute that
 * was read and is known not to exist (no security label, an abstract socket's file mode):
 * a rule on it fails. Without `absent` the attribute is unknown (the peer exited, /proc is
 * unreadable, the value could have been set by an unprivileged process), and a rule on it
 * is unknown, which never allows.
 */
export type Outcome<T> = { ok: true; value: T } | { ok: false; reason: string; absent?: true };

/** A failed read: one class, so that a slot holding either a value or a failure can tell them apart. */
class Missing {
  readonly ok = false;
  readonly absent?: true;
  constructor(
    readonly reason: string,
    absent?: true,
  ) {
    if (absent) this.absent = true;
  }
}

export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
/** The attribute could not be read: rules on it are unknown. */
export const no = (reason: string): Outcome<never> => new Missing(reason);
/** The attribute was read and does not exist: rules on it fail. */
export const absent = (reason: string): Outcome<never> => new Missing(reason, true);

/** True for what {@link no} and {@link absent} make; false for any attribute value. */
export const isMissing = (value: unknown): value is Outcome<never> & { ok: false } => value instanceof Missing;
