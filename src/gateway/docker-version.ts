/**
 * API versions as the Docker daemon reads them: the path prefix `/v{version:[0-9.]+}`,
 * compared part by part as numbers (a part that is not a number counts as 0, a missing
 * part as 0), as moby's api/types/versions does.
 */
import { API_WINDOW } from './docker-model.js';

const PREFIX = /^v([0-9.]+)$/;

/** The version a path's first segment names, or undefined when it names none. */
export function pathVersion(segments: readonly string[]): string | undefined {
  // Only a prefix followed by more segments is one (the daemon's router has it so).
  if (segments.length < 2) return undefined;
  return PREFIX.exec(segments[0]!)?.[1];
}

/** -1, 0 or 1 as `a` is older than, the same as or newer than `b`. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.');
  const pb = b.split('.');
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = number(pa[i]);
    const y = number(pb[i]);
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function number(part: string | undefined): number {
  return part !== undefined && /^\d{1,9}$/.test(part) ? Number(part) : 0;
}

/** Why a version is outside the window the profile models, or undefined. */
export function outsideWindow(version: string, what: string): string | undefined {
  if (compareVersions(version, API_WINDOW.min) < 0 || compareVersions(version, API_WINDOW.max) > 0)
    return `${what} ${version} is outside the API versions the Docker profile models (${API_WINDOW.min} to ${API_WINDOW.max})`;
  return undefined;
}
