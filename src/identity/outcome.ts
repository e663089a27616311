/** An attribute value, or the reason it could not be had (rules fail closed with that reason). */
export type Outcome<T> = { ok: true; value: T } | { ok: false; reason: string };

export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
export const no = (reason: string): Outcome<never> => ({ ok: false, reason });
