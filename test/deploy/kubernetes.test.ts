import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { REPO_ROOT } from '../support/paths.ts';
import { runBinary } from '../support/processes.ts';

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: unknown };

/** JSON-schema validators vendored by the kubernetes-models packages (Kubernetes, KEDA, Prometheus Operator). */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

const KUBECTL = {
  binary: 'kubectl',
  installHint:
    'install kubectl (it renders kustomize): Debian package kubernetes-client, as .ci/run does',
};

function validate(manifest: Manifest): void {
  const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
  if (!Model) throw new Error(`no schema for ${manifest.apiVersion} ${manifest.kind}`);
  new Model(manifest as never).validate();
}

interface Container {
  securityContext?: Record<string, unknown>;
  livenessProbe: { httpGet: { path: string } };
  readinessProbe: { httpGet: { path: string } };
  resources: { requests?: unknown; limits?: unknown };
}

let manifests: Manifest[];
const find = (kind: string, name: string) => {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name.startsWith(name));
  if (!found) throw new Error(`${kind} ${name} not rendered`);
  return found;
};

describe('deploy/kubernetes (kustomize base + example overlay)', () => {
  beforeAll(async () => {
    const rendered = await runBinary(KUBECTL, [
      'kustomize',
      path.join(REPO_ROOT, 'deploy/kubernetes/overlays/example'),
    ]);
    expect(rendered.code, rendered.stderr).toBe(0);
    manifests = YAML.parseAllDocuments(rendered.stdout).map((doc) => doc.toJS() as Manifest);
  });

  it('renders every object, each valid against its Kubernetes, KEDA or Prometheus Operator schema', () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual(
      ['ConfigMap', 'ConfigMap', 'ConfigMap', 'Deployment', 'Job', 'Job', 'NetworkPolicy',
        'PodDisruptionBudget', 'PodMonitor', 'PrometheusRule', 'ScaledObject', 'Service',
        'ServiceAccount'],
    );
    for (const manifest of manifests) expect(() => validate(manifest)).not.toThrow();
    // The validator bites: a wrong type is refused.
    const broken = structuredClone(find('Deployment', 'symphony-relay'));
    (broken as unknown as { spec: { replicas: unknown } }).spec.replicas = 'three';
    expect(() => validate(broken)).toThrow(/replicas/);
  });

  it('runs the relayer as operators need: probes, grace above the shutdown grace, no service links, non-root read-only', () => {
    const deployment = find('Deployment', 'symphony-relay') as unknown as {
      spec: { template: { spec: Record<string, unknown> & { containers: Container[] } } };
    };
    const pod = deployment.spec.template.spec;
    const [relayer] = pod.containers;
    expect(pod.enableServiceLinks).toBe(false);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(relayer?.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(relayer?.livenessProbe.httpGet.path).toBe('/healthz');
    expect(relayer?.readinessProbe.httpGet.path).toBe('/readyz');
    expect(relayer?.resources.requests).toBeDefined();
    expect(relayer?.resources.limits).toBeDefined();
    const config = find('ConfigMap', 'symphony-relay-config') as unknown as { data: Record<string, string> };
    expect(Number(pod.terminationGracePeriodSeconds) * 1000).toBeGreaterThan(
      Number(config.data.SYMPHONY_SHUTDOWN_GRACE_MS) + 5_000,
    );
  });

  it('binds the unauthenticated probes on the pod IP and admits only Prometheus to them, on the metrics port', () => {
    const config = find('ConfigMap', 'symphony-relay-config') as unknown as { data: Record<string, string> };
    expect(config.data.SYMPHONY_HTTP_HOST).toBe('0.0.0.0');
    const policy = find('NetworkPolicy', 'symphony-relay') as unknown as {
      spec: { podSelector: unknown; policyTypes: string[]; ingress: { from: unknown[]; ports: unknown[] }[] };
    };
    const deployment = find('Deployment', 'symphony-relay') as unknown as {
      spec: { template: { metadata: { labels: Record<string, string> } } };
    };
    expect(policy.spec.podSelector).toEqual({ matchLabels: deployment.spec.template.metadata.labels });
    expect(policy.spec.policyTypes).toEqual(['Ingress']);
    expect(policy.spec.ingress).toEqual([
      {
        from: [
          {
            namespaceSelector: {},
            podSelector: {
              matchExpressions: [{ key: 'app.kubernetes.io/name', operator: 'In', values: ['prometheus'] }],
            },
          },
        ],
        ports: [{ port: 'metrics', protocol: 'TCP' }],
      },
    ]);
  });

  it('takes secrets only by reference and bootstraps every login (relay, ingest, readonly)', () => {
    expect(manifests.some((m) => m.kind === 'Secret')).toBe(false);
    const text = YAML.stringify(manifests);
    expect(text).not.toMatch(/postgres(ql)?:\/\/[^\s'"]*:[^\s'"@]*@/);
    const bootstrap = JSON.stringify(find('Job', 'symphony-relay-bootstrap'));
    for (const role of ['symphony_executor', 'symphony_ingest', 'symphony_readonly']) {
      expect(bootstrap).toContain(role);
    }
    expect(bootstrap).toContain('policy');
  });

  it('carries the shipped alert rules unchanged in its PrometheusRule', async () => {
    const alerts = YAML.parse(
      await readFile(path.join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8'),
    ) as { groups: unknown };
    const rule = find('PrometheusRule', 'symphony-relay') as unknown as { spec: { groups: unknown } };
    expect(rule.spec.groups).toEqual(alerts.groups);
  });
});
