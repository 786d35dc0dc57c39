// What an SRE sees when the queue finds damage at start: the relay starts all the same,
// the entry is in <spoolDir>/corrupt/, a log line names it, and the metric the alert
// SluiceQueueQuarantined watches counts it by reason.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { newQueueId } from '../spool/queue-id.ts';
import { startTestRelay } from '../testing/harness.ts';

describe('a relay starting on a damaged queue', () => {
  it('starts, quarantines, logs and counts what it cannot read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-queue-damage-'));
    const spoolDir = join(dir, 'spool');
    const queueDir = join(spoolDir, 'queue');
    await mkdir(queueDir, { recursive: true });
    const unreadable = newQueueId();
    await mkdir(join(queueDir, `${unreadable}.msg`));
    await writeFile(join(queueDir, 'stray.bin'), 'not mail');
    const relay = await startTestRelay({ deliver: true, config: { spoolDir } });
    try {
      // the scan runs in the background; the relay takes mail meanwhile
      await relay.relay.delivery?.scanned;
      const metric = await relay.relay.metrics.registry.getSingleMetricAsString(
        'sluice_queue_quarantined_total',
      );
      assert.match(metric, /sluice_queue_quarantined_total\{reason="unreadable"\} 1$/m);
      assert.match(metric, /sluice_queue_quarantined_total\{reason="unknown_entry"\} 1$/m);
      assert.match(metric, /sluice_queue_quarantined_total\{reason="corrupt_message"\} 0$/m);
      assert.deepEqual((await readdir(join(spoolDir, 'corrupt'))).sort(), [`${unreadable}.msg`, 'stray.bin']);
      const logged = relay.logs.lines
        .filter((l) => l.event === 'queue_corrupt')
        .map((l) => `${l.queueId ?? l.entry} ${l.reason} ${l.level}`)
        .sort();
      assert.deepEqual(logged, [`${unreadable} unreadable error`, 'stray.bin unknown_entry error'].sort());
    } finally {
      await relay.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
