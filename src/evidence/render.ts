import type { EvidenceReport } from './evidence.ts';

const LABEL = 12;
const label = (text: string) => text.padEnd(LABEL);

function commitText(commit: string | null, source: string, dirty: boolean): string {
  if (!commit) return 'commit unknown';
  return `commit ${commit} (${source}${dirty ? ', with uncommitted changes' : ''})`;
}

/** The report as text for a person: every section, then one line per drift. */
export function renderEvidence(report: EvidenceReport): string {
  const { session, code, schema, migrations, policy, privileges, proofs, drift } = report;
  const applied = migrations.filter((row) => row.state === 'applied').length;
  const lines = [
    `evidence of database ${session.database}, read as ${session.login} (acting as ${session.actingAs}) at ${report.generatedAt}`,
    `${label('code')}symphony-relay ${code.version}, ${commitText(code.commit, code.source, code.dirty)}`,
    `${label('schema')}live sha256:${schema.liveFingerprint}`,
    `${label('')}snapshot sha256:${schema.committedFingerprint} (schema/snapshot.txt): ${schema.equal ? 'equal' : 'DIFFERENT'}`,
    `${label('migrations')}${applied} of ${migrations.length} applied with the checksum of their file`,
    ...migrations.map(
      (row) =>
        `  ${(row.fileName ?? `${row.version} (no file)`).padEnd(44)} ${row.state.padEnd(11)} sha256:${row.ledgerChecksum ?? row.fileChecksum ?? '-'}`,
    ),
    `${label('policy')}${
      policy.active
        ? `ACTIVE ${policy.active.version} sha256:${policy.active.checksum}`
        : "no ACTIVE policy (seed one with 'symphony-relay policy seed --file F')"
    }${policy.expected ? `; expected ${policy.expected.version} from ${policy.expected.file}` : ''}`,
    ...privileges.map(
      (found, index) =>
        `${label(index === 0 ? 'privileges' : '')}${found.check}: ${found.undeclared.length} undeclared, ${found.missing.length} missing`,
    ),
  ];
  if (proofs.run) {
    const run = proofs.run;
    const proved = proofs.register.filter((row) => row.result === 'proved').length;
    lines.push(
      `${label('proofs')}${run.reportFile}: run ${run.startedAt.toISOString()}, ${commitText(run.commit, run.commitSource, run.dirty)}`,
      `${label('')}${run.total} tests, ${run.passed} passed, ${run.failed} failed; ${proved} of ${proofs.register.length} invariants proved`,
      ...proofs.register.map((row) => `  ${row.id.padEnd(44)} ${row.result}`),
    );
  } else {
    const note = proofs.reportMissing
      ? ' (the proofs are not part of this evidence; --require-proofs makes this drift)'
      : '';
    lines.push(`${label('proofs')}${proofs.problem ?? 'no test report'}${note}`);
  }
  if (drift.length === 0) {
    lines.push('drift: none');
  } else {
    lines.push(`drift: ${drift.length}`);
    lines.push(...drift.map((item) => `DRIFT ${item.section}: ${item.message}`));
  }
  return lines.join('\n');
}
