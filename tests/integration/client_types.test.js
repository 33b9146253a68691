'use strict';
// The client's TypeScript declarations (clients/js/wshub.d.ts), checked by tsc from
// npm (tests/js): a program using the whole API compiles under --strict, and a
// program that misuses it does not (so the check is not vacuous).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..', '..');
const TSC = path.join(ROOT, 'tests', 'js', 'node_modules', 'typescript', 'bin', 'tsc');
const TYPES = path.join(ROOT, 'tests', 'types');

function tsc(args) {
  const r = spawnSync(process.execPath, [TSC, ...args], { cwd: TYPES, encoding: 'utf8', timeout: 120000 });
  assert.equal(r.error, undefined, `tsc did not run: ${r.error}`);
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

test('a program using the client API compiles against wshub.d.ts (--strict)', () => {
  const r = tsc(['-p', 'tsconfig.json']);
  assert.equal(r.code, 0, r.out);
});

test('a program misusing the API is refused by the declarations', () => {
  const r = tsc(['-p', 'tsconfig.misuse.json']);
  assert.notEqual(r.code, 0, 'client_misuse.ts compiled');
  assert.match(r.out, /client_misuse\.ts\(4,\d+\): error TS2322/);
  assert.match(r.out, /client_misuse\.ts\(5,\d+\): error TS2345/);
});
