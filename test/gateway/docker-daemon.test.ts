import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { IMAGE, startDockerd } from '../helpers/dockerd.js';

const daemon = await startDockerd();
after(() => daemon.stop());

test('the test daemon runs a busybox container offline and its teardown leaves nothing behind', { skip: daemon.skip }, async () => {
  const r = await daemon.docker(['run', '--rm', '--network', 'none', IMAGE, '/bin/echo', 'hi']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hi\n');
});
