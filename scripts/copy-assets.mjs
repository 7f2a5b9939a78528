// Copies the non-TypeScript files that the compiled code reads at run time (SQL migrations) into dist/.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const src = 'src';
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (/\.(sql|html|css|js|svg|lua)$/.test(name)) cpSync(path, join('dist', relative(src, path)));
  }
}
walk(src);
