// Copies the non-TypeScript files that the compiled code reads at run time (SQL migrations, the pages' files,
// the bench's wrk script) beside it. Arguments: FROM:TO folder pairs; none means src:dist (the product).
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import process from 'node:process';

function walk(from, to, dir = from) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(from, to, path);
    else if (/\.(sql|html|css|js|svg|lua)$/.test(name)) cpSync(path, join(to, relative(from, path)));
  }
}
const pairs = process.argv.length > 2 ? process.argv.slice(2) : ['src:dist'];
for (const pair of pairs) {
  const [from, to] = pair.split(':');
  walk(from, to);
}
