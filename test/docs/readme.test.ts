import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatConfigMarkdown } from '../../src/config.ts';
import { populatedRelayerMetrics } from '../support/prometheus-tools.ts';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));
const readme = () => readFile(README, 'utf8');

describe('README stays true', () => {
  it('documents every configuration variable exactly as src/config.ts defines it', async () => {
    const text = await readme();
    const table = /<!-- config-table:start[^>]*-->\n([\s\S]*?)<!-- config-table:end -->/.exec(
      text,
    )?.[1];
    // On failure, paste the expected table between the config-table markers.
    expect(table?.trim()).toBe(formatConfigMarkdown().trim());
  });

  it('documents every metric the relayer exports', async () => {
    const text = await readme();
    const names = (await populatedRelayerMetrics().registry.getMetricsAsJSON())
      .map((metric) => metric.name)
      .filter((name) => name.startsWith('symphony_relay_'));
    const undocumented = names.filter(
      (name) => !text.includes(name) && !text.includes(`_${name.replace('symphony_relay_', '')}\``),
    );
    expect(undocumented).toEqual([]);
  });

  it('names the two commands a newcomer pastes', async () => {
    const text = await readme();
    expect(text).toContain('npm install && npm start');
    expect(text).toContain('npm test');
  });
});
