/**
 * A worker for the WorkerPort tests: echoes, throws, or ends its thread when asked, so that
 * the main thread sees a real worker answer, fail and die.
 */
import { threadId } from 'node:worker_threads';
import { serve } from '../../src/worker-port.js';

serve<{ op: 'echo' | 'throw' | 'exit'; value?: string }, { value?: string; threadId: number }>((m) => {
  if (m.op === 'throw') throw new Error(`asked to throw ${m.value}`);
  if (m.op === 'exit') process.exit(3);
  return { value: m.value, threadId };
});
