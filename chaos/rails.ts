import { CHAOS_RAIL } from './producers.ts';

/** SYMPHONY_RAILS for the fleet: the chaos rail type, served over http by the recorder. */
export function httpRailsJson(url: string): string {
  return JSON.stringify({ [CHAOS_RAIL]: { type: 'http', url } });
}
