// Writes deploy/haproxy/haproxy.cfg and deploy/nginx/nginx.conf: what `onsale cluster` generates, for the
// example addresses of DEPLOY_EXAMPLE (src/processes/lb/balancer.ts). Run after `npm run build`;
// test/deploy.test.ts fails when the committed files differ from the generator's output.
import { writeFileSync } from 'node:fs';
import { DEPLOY_EXAMPLE, renderHaproxy, renderNginx } from '../dist/processes/lb/balancer.js';

writeFileSync('deploy/haproxy/haproxy.cfg', renderHaproxy(DEPLOY_EXAMPLE));
writeFileSync('deploy/nginx/nginx.conf', renderNginx(DEPLOY_EXAMPLE));
