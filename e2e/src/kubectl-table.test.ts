import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kubectlTables, row } from './kubectl-table.ts';

describe('kubectl table output', () => {
  it('reads cells by column, empty cells included, one table per resource type', () => {
    const output = [
      'NAME                           REPLICAS   READY-PODS   AGE',
      'relaypolicy.sluice.dev/relay   2          2            3s',
      '',
      'NAME                        USERNAME   SUSPENDED   ABUSE   AGE',
      'smtpuser.sluice.dev/alice   alice      false               3s',
      '',
    ].join('\n');
    const [policies, users] = kubectlTables(output);
    assert.deepEqual(policies?.columns, ['NAME', 'REPLICAS', 'READY-PODS', 'AGE']);
    assert.deepEqual(row(policies, 'relaypolicy.sluice.dev/relay', ['REPLICAS', 'AGE']), {
      REPLICAS: '2',
      AGE: '3s',
    });
    assert.deepEqual(row(users, 'smtpuser.sluice.dev/alice', ['SUSPENDED', 'ABUSE', 'AGE']), {
      SUSPENDED: 'false',
      ABUSE: '',
      AGE: '3s',
    });
    assert.equal(row(users, 'smtpuser.sluice.dev/bob', ['AGE']), undefined);
  });
});
