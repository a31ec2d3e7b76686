/**
 * Writes deploy/kubernetes/base/prometheusrule.yaml from deploy/prometheus/alerts.yml, so the
 * Prometheus Operator gets exactly the shipped alerts (test/deploy/kubernetes.test.ts checks
 * that they are equal). Run `npm run deploy:sync-rules` after changing alerts.yml.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const alerts = YAML.parse(
  await readFile(path.join(root, 'deploy/prometheus/alerts.yml'), 'utf8'),
) as { groups: unknown };
const rule = {
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'PrometheusRule',
  metadata: { name: 'symphony-relay' },
  spec: { groups: alerts.groups },
};
const header =
  '# Generated from deploy/prometheus/alerts.yml by `npm run deploy:sync-rules`; do not edit.\n' +
  '# test/deploy/kubernetes.test.ts fails when the two differ.\n';
const target = path.join(root, 'deploy/kubernetes/base/prometheusrule.yaml');
await writeFile(target, header + YAML.stringify(rule, { lineWidth: 0 }));
console.log(`wrote ${path.relative(root, target)}`);
