/** guard() in front of the servers of express and fastify, with curl as the client. */
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { Policy, Result, guard, peerOf, type Decision } from '../../src/index.js';
import { needCommand, needRoot, run } from '../helpers/index.js';
import { DAEMON, record, serve } from './fixtures.js';

const curl = (path: string) => ['curl', ['-sS', '--max-time', '10', '--unix-socket', path, 'http://localhost/who']] as [string, string[]];
const skip = needRoot() || needCommand('curl');

/** Asserts: root gets the handler's answer, daemon gets no byte, and its request was never routed. */
async function allowsRootOnly(path: string, handled: string[], denied: Array<[Decision | Error, net.Socket]>) {
  const allowed = await run(...curl(path)).output();
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.deepEqual(JSON.parse(allowed.stdout), { uid: 0, user: 'root' });
  const other = await run(...curl(path), { as: DAEMON }).output();
  assert.equal(other.stdout, '', 'no response byte reaches a denied peer');
  assert.notEqual(other.code, 0);
  assert.deepEqual(handled, ['/who'], 'the denied request never reached a route');
  assert.equal(denied.length, 1);
  assert.equal((denied[0]![0] as Decision).result, Result.UID);
}

test('guard: an express app on a guarded http.Server', { timeout: 60_000, skip }, async (t) => {
  const handled: string[] = [];
  const app = express();
  app.get('/who', (req, res) => {
    handled.push(req.path);
    const peer = peerOf(req.socket);
    res.json({ uid: peer?.uid, user: peer?.user });
  });
  const server = guard(http.createServer(app), new Policy().uid(0));
  const denied = record<[Decision | Error, net.Socket]>(server, 'denied');
  await allowsRootOnly(await serve(t, server), handled, denied);
});

test('guard: a fastify app, guarding fastify.server before it listens', { timeout: 60_000, skip }, async (t) => {
  const handled: string[] = [];
  const app = Fastify();
  app.get('/who', async (req) => {
    handled.push(req.url);
    const peer = peerOf(req.raw.socket);
    return { uid: peer?.uid, user: peer?.user };
  });
  guard(app.server, new Policy().uid(0));
  const denied = record<[Decision | Error, net.Socket]>(app.server, 'denied');
  t.after(() => app.close());
  await app.ready();
  await allowsRootOnly(await serve(t, app.server), handled, denied);
});

const curlStatus = (path: string) =>
  ['curl', ['-sS', '-i', '--max-time', '10', '--unix-socket', path, 'http://localhost/who']] as [string, string[]];

/** Asserts: daemon gets a complete 403 with the reasons as JSON, and its request was never routed. */
async function deniesWith403(path: string, handled: string[], denied: Array<[Decision | Error, net.Socket]>) {
  const other = await run(...curlStatus(path), { as: DAEMON }).output();
  assert.equal(other.code, 0, `curl reads a whole response, not a reset: ${other.stderr}`);
  const [head, body] = other.stdout.split('\r\n\r\n');
  assert.match(head!, /^HTTP\/1\.1 403 Forbidden\r\n/);
  assert.match(head!, /\r\nConnection: close(\r\n|$)/i);
  assert.match(head!, /\r\nContent-Type: application\/json(\r\n|$)/i);
  assert.equal(Number(/\r\nContent-Length: (\d+)/i.exec(head!)?.[1]), Buffer.byteLength(body!));
  const json = JSON.parse(body!) as { message: string; failures: Array<{ rule: string; message: string }> };
  assert.match(json.message, /^secpolicy: denied: /);
  assert.deepEqual(
    json.failures.map((f) => f.rule),
    ['uid'],
  );
  assert.deepEqual(Object.keys(json.failures[0]!).sort(), ['message', 'rule'], 'only the rule and its message are sent');
  assert.deepEqual(handled, [], 'the denied request never reached a route');
  assert.equal(denied.length, 1);
  assert.equal((denied[0]![0] as Decision).result, Result.UID);
}

test("guard deny: 'http': an express app answers a denied curl with 403 and JSON", { timeout: 60_000, skip }, async (t) => {
  const handled: string[] = [];
  const app = express();
  app.get('/who', (req, res) => {
    handled.push(req.path);
    res.json({ uid: peerOf(req.socket)?.uid });
  });
  const server = guard(http.createServer(app), new Policy().uid(0), { deny: 'http' });
  const denied = record<[Decision | Error, net.Socket]>(server, 'denied');
  await deniesWith403(await serve(t, server), handled, denied);
});

test("guard deny: 'http': a fastify app answers a denied curl with 403 and JSON", { timeout: 60_000, skip }, async (t) => {
  const handled: string[] = [];
  const app = Fastify();
  app.get('/who', async (req) => {
    handled.push(req.url);
    return { uid: peerOf(req.raw.socket)?.uid };
  });
  guard(app.server, new Policy().uid(0), { deny: 'http' });
  const denied = record<[Decision | Error, net.Socket]>(app.server, 'denied');
  t.after(() => app.close());
  await app.ready();
  const path = await serve(t, app.server);
  await deniesWith403(path, handled, denied);
  // The allowed peer is still served normally.
  const allowed = await run(...curl(path)).output();
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.deepEqual(JSON.parse(allowed.stdout), { uid: 0 });
});
