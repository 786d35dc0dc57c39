import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { quantityBytes, type SpoolTemplateHolder, spoolChange } from './spool-resize.ts';

function sts(storage: string, storageClassName?: string): SpoolTemplateHolder {
  return {
    metadata: { name: 'mail-relay' },
    spec: {
      volumeClaimTemplates: [
        {
          metadata: { name: 'spool' },
          spec: { resources: { requests: { storage } }, ...(storageClassName ? { storageClassName } : {}) },
        },
      ],
    },
  };
}

describe('spool template changes', () => {
  it('reads quantities in bytes', () => {
    assert.equal(quantityBytes('10Gi'), 10 * 2 ** 30);
    assert.equal(quantityBytes('1.5G'), 1.5e9);
    assert.ok(Number.isNaN(quantityBytes('ten')));
  });

  it('expands a larger size, ignores an equal one written differently, refuses a smaller one or another class', () => {
    assert.deepEqual(spoolChange(sts('1Gi'), sts('2Gi')), { type: 'expand', from: '1Gi', to: '2Gi' });
    assert.deepEqual(spoolChange(sts('1Gi'), sts('1024Mi')), { type: 'none' });
    assert.deepEqual(spoolChange(undefined, sts('1Gi')), { type: 'none' });
    const shrink = spoolChange(sts('2Gi'), sts('1Gi'));
    assert.equal(shrink.type, 'refused');
    assert.match(shrink.type === 'refused' ? shrink.message : '', /cannot shrink from 2Gi to 1Gi/);
    const moved = spoolChange(sts('1Gi', 'fast'), sts('1Gi', 'slow'));
    assert.match(
      moved.type === 'refused' ? moved.message : '',
      /storageClassName cannot change from "fast" to "slow"/,
    );
  });
});
