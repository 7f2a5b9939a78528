/**
 * The import rules that keep the layout honest (README, "Layout"); `npm run lint` checks them with
 * dependency-cruiser, so a change that breaks one fails `npm test`.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'domain-is-pure',
      comment:
        'The domain decides; it does no I/O. It imports only other domain modules: no adapter, web, worker, package or node: module.',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { pathNot: '^src/domain/' },
    },
    {
      name: 'domain-no-node-builtins',
      comment: 'The domain imports no node: module (no clock, file, network or crypto of its own).',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'ports-are-types',
      comment: 'A port is an interface: it names domain types and nothing else.',
      severity: 'error',
      from: { path: '^src/ports/' },
      to: { pathNot: '^src/(ports|domain)/' },
    },
    {
      name: 'roles-use-ports-not-adapters',
      comment:
        'The web server and the worker talk to storage and queues through the ports; which adapter runs is chosen where a process starts.',
      severity: 'error',
      from: { path: '^src/(web|worker)/' },
      to: { path: '^src/adapters/' },
    },
    {
      name: 'processes-on-top',
      comment:
        'src/processes starts and wires the roles (which adapters, which metrics); nothing below it reaches back up.',
      severity: 'error',
      from: { path: '^src/(domain|ports|adapters|web|worker|metrics|shared|simulate)/' },
      to: { path: '^src/processes/' },
    },
    {
      name: 'adapters-below-roles',
      comment: 'An adapter serves the roles; it never reaches up into them.',
      severity: 'error',
      from: { path: '^src/adapters/' },
      to: { path: '^src/(web|worker|processes|simulate|metrics)/|^src/cli\\.ts$' },
    },
    {
      name: 'product-not-tools',
      comment: 'What ships (src/) never imports the benchmarks or the tests.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(bench|test)/' },
    },
    {
      name: 'client-stands-alone',
      comment:
        "onsale/client ships to integrators (Node or a browser): it imports nothing, neither onsale's modules nor node: ones.",
      severity: 'error',
      from: { path: '^src/client/' },
      to: { pathNot: '^src/client/' },
    },
    {
      name: 'no-cycles',
      comment: 'Import cycles hide which module depends on which; break them with a module both can import.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'Every import resolves to a file or an installed package.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'],
    },
  },
};
