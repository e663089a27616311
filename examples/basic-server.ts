/**
 * The twin of the C library's basic server: a UNIX socket server that applies one policy
 * (uid, gid, user, group, perms, program, callback, creds) to every connection and prints
 * the Decision before trusting a byte. Rule values come from flags, else from the
 * environment (the user running the server, the socket mode it sets, node and socat as
 * programs, our own security label if the host has an LSM).
 *
 *   npm start                                    # self-demo: one allowed, one denied client; exits
 *   node dist/examples/basic-server.js --serve   # keep serving; connect with socat
 *   node dist/examples/basic-server.js --serve --path /tmp/app.sock --uid 1000 --group app --perms 0660
 *
 * With --uid and no --gid, the gid rule asks for that user's primary group. The socket
 * file is created by listen() with its mode already set, and removed on SIGTERM/SIGINT.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Policy, groupName, isSecpolicyError, listen, primaryGidOf, resultNames, userName, type Decision } from '../src/index.js';

const USAGE = `usage: basic-server [--serve] [--path P] [--uid N] [--gid N] [--user NAME] [--group NAME]
                    [--perms OCTAL] [--program PATH]... [--creds LABEL]
  without --serve: a short self-demo (one allowed client, one denied client), then exit`;

const { values: flags } = parseArgs({
  options: {
    serve: { type: 'boolean', default: false },
    path: { type: 'string' },
    uid: { type: 'string' },
    gid: { type: 'string' },
    user: { type: 'string' },
    group: { type: 'string' },
    perms: { type: 'string' },
    program: { type: 'string', multiple: true },
    creds: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}

/** Our own LSM label (SELinux context, AppArmor profile), if the host has one. */
function ownLabel(): string | undefined {
  try {
    const label = readFileSync('/proc/self/attr/current', 'utf8').replace(/\0/g, '').trim();
    return label && label !== 'unconfined' ? label : undefined;
  } catch {
    return undefined;
  }
}

const uid = flags.uid !== undefined ? Number(flags.uid) : process.getuid!();
// Another user's gid is their primary group (NSS), not ours; -1 (no such user) fails the rule check below.
const gid = flags.gid !== undefined ? Number(flags.gid) : flags.uid !== undefined ? (primaryGidOf(uid) ?? -1) : process.getgid!();
const user = flags.user ?? userName(uid);
const group = flags.group ?? groupName(gid);
const perms = flags.perms !== undefined ? parseInt(flags.perms, 8) : 0o666;
const programs = flags.program ?? [process.execPath, '/usr/bin/socat'].filter((p) => existsSync(p));
const creds = flags.creds ?? ownLabel();

// Arguments are validated by the rule methods: a bad flag fails here with ERR_SECPOLICY_INVALID_ARG.
let policy: Policy;
try {
  policy = new Policy().uid(uid).gid(gid).perms(perms).program(programs);
  if (user !== undefined) policy.user(user);
  if (group !== undefined) policy.group(group);
  // A callback sees the lazily resolved peer; here: only peers visible in our pid namespace.
  policy.callback((peer) => peer.pid > 0);
  if (creds !== undefined) policy.creds(creds);
} catch (e) {
  console.error(isSecpolicyError(e) ? `${e.code}: ${e.message}` : e);
  console.error(USAGE);
  process.exit(2);
}

const shown = (name: string, value: unknown) => (name === 'perms' ? `0${(value as number).toString(8)}` : value);
console.log('policy:', JSON.stringify(Object.fromEntries(policy.rules.map((r) => [r.name, shown(r.name, r.expected)]))));
if (creds === undefined) console.log('  (no creds rule: no LSM labels processes here; pass --creds LABEL to require one)');

/** One line per connection: the Decision, with the peer's main attributes. */
function show(decision: Decision): void {
  const p = decision.peer;
  const who = `pid ${p.pid} uid ${p.uid} (${p.user ?? '?'}) gid ${p.gid} (${p.group ?? '?'}) program ${p.program ?? '?'}`;
  if (decision.allowed) {
    console.log(`ALLOWED ${who}`);
    return;
  }
  console.log(`DENIED  ${who}: result 0x${decision.result.toString(16)} [${resultNames(decision.result).join(' ')}]`);
  for (const f of decision.failures) console.log(`        ${f.rule}: ${f.message}`);
}

const decisions: Decision[] = [];
const server = net.createServer(async (socket) => {
  socket.on('error', () => {});
  try {
    const decision = await policy.apply(socket);
    decisions.push(decision);
    show(decision);
    if (decision.allowed) socket.end(`hello ${decision.peer.user ?? decision.peer.uid}, you are verified\n`);
    else socket.destroy();
  } catch (e) {
    // No verification was possible (peer gone, not a UNIX socket): fail closed.
    console.log(`ERROR   ${isSecpolicyError(e) ? e.code : ''} ${(e as Error).message}`);
    socket.destroy();
  }
});

const dir = flags.path ? undefined : mkdtempSync(join(tmpdir(), 'secpolicy-basic-'));
const path = flags.path ?? join(dir!, 'basic.sock');
if (dir) chmodSync(dir, 0o755); // so that a client running as another user can reach the socket
/** Closes the server (which removes its socket file) and the temporary directory. */
const cleanup = () =>
  new Promise<void>((resolve) => {
    server.close(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
      resolve();
    });
  });

try {
  // The socket file is created with its mode already set: no window with the umask's mode.
  await listen(server, path, { mode: perms });
} catch (e) {
  console.error(isSecpolicyError(e) ? `${e.code}: ${e.message}` : e);
  if (dir) rmSync(dir, { recursive: true, force: true });
  process.exit(2);
}

if (flags.serve) {
  console.log(`listening on ${path} (mode 0${perms.toString(8)})`);
  console.log(`connect with:  socat - UNIX-CONNECT:${path}`);
  console.log('serving; Ctrl-C or SIGTERM to stop');
  const stop = async () => {
    await cleanup();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} else {
  // The socket is temporary and gone when the demo ends: nothing points at it.
  console.log(`self-demo on a temporary socket (mode 0${perms.toString(8)}), removed at the end`);
  process.exitCode = await demo();
  await cleanup();
}

/** Runs one client that passes and one that fails; 0 when both got the expected decision. */
async function demo(): Promise<number> {
  const client = `const s = require('net').connect(process.argv[1]);
    s.on('data', (d) => process.stdout.write(d)); s.on('error', () => {}); s.on('close', () => process.exit(0));`;
  const connectAs = async (label: string, argv: string[]) => {
    console.log(`\n-- ${label}`);
    const child = spawn(argv[0]!, [...argv.slice(1), '-e', client, path], { stdio: ['ignore', 'inherit', 'inherit'] });
    await once(child, 'exit');
  };
  await connectAs('a client running as this user', [process.execPath]);
  const root = process.getuid!() === 0;
  const setpriv = spawnSync('sh', ['-c', 'command -v setpriv'], { stdio: 'ignore' }).status === 0;
  if (root && setpriv && uid !== 65534) {
    await connectAs('a client running as nobody (setpriv)', [
      'setpriv',
      '--reuid',
      '65534',
      '--regid',
      '65534',
      '--clear-groups',
      process.execPath,
    ]);
  } else {
    console.log('\n-- (no denied-client demo: it needs root and setpriv to run a client as nobody)');
  }
  const [first, second] = decisions;
  const ok = first?.allowed === true && (second === undefined || second.allowed === false);
  console.log(ok ? '\ndemo: the expected decisions' : '\ndemo: UNEXPECTED decisions (see above)');
  return ok ? 0 : 1;
}
