#!/usr/bin/env node
// Runs the whole suite (or the files/folders given as arguments) with node's test runner through tsx.
// Node 20's `--test` does not expand globs, so the test files are collected here.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const roots = process.argv.slice(2).length ? process.argv.slice(2) : ['test'];

function collect(path, out) {
  const st = statSync(path);
  if (st.isFile()) { if (/\.test\.ts$/.test(path)) out.push(path); return out; }
  for (const name of readdirSync(path).sort()) {
    if (name === 'node_modules' || name === 'fixtures') continue;
    collect(join(path, name), out);
  }
  return out;
}

const files = roots.flatMap((r) => collect(join(root, r), [])).map((f) => relative(root, f));
if (files.length === 0) { console.error(`no test files under ${roots.join(', ')}`); process.exit(1); }
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
const result = spawnSync(process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${concurrency}`, ...files],
  { cwd: root, stdio: 'inherit', env: process.env });
process.exit(result.status ?? 1);
