// Import rules that keep the mail path one-directional (make deps; part of make check).
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'mail-path-one-way',
      comment: 'queue/ and delivery/ never import the SMTP front (smtp/); shared formats live in wire/.',
      severity: 'error',
      from: { path: '^relay/src/(delivery|queue)/' },
      to: { path: '^relay/src/smtp/' },
    },
    {
      name: 'queue-delivery-one-way',
      comment: 'The queue drives delivery: delivery/ never imports queue/.',
      severity: 'error',
      from: { path: '^relay/src/delivery/' },
      to: { path: '^relay/src/queue/' },
    },
    {
      name: 'policy-below-smtp-front',
      comment: 'Decisions in policy/ take no vocabulary from the SMTP front: it names replies as its own string unions, which the stages hand to the reply table.',
      severity: 'error',
      from: { path: '^relay/src/policy/' },
      to: { path: '^relay/src/smtp/' },
    },
    {
      name: 'stages-stand-apart',
      comment: 'Each SMTP stage uses only its own port and the shared stage helpers: no stage imports another stage or the adapter.',
      severity: 'error',
      from: { path: '^relay/src/smtp/stages/' },
      to: {
        path: ['^relay/src/smtp/stages/', '^relay/src/smtp/(handlers|listener|runtime)\\.ts$'],
        pathNot: '^relay/src/smtp/stages/stage\\.ts$',
      },
    },
    {
      name: 'no-test-kit-in-production',
      comment: 'Production code never imports a test kit or a test file.',
      severity: 'error',
      from: { path: '^(relay|operator)/src/', pathNot: ['\\.test\\.ts$', '^(relay|operator)/src/testing/'] },
      to: { path: ['^(relay|operator)/src/testing/', '\\.test\\.ts$'] },
    },
    {
      name: 'relay-stands-alone',
      comment: 'The relay never imports the operator or the end-to-end tests.',
      severity: 'error',
      from: { path: '^relay/' },
      to: { path: '^(operator|e2e)/' },
    },
    {
      name: 'telemetry-stands-alone',
      comment: 'The shared telemetry package imports neither the relay nor the operator (both import it).',
      severity: 'error',
      from: { path: '^telemetry/' },
      to: { path: '^(relay|operator|e2e|tools)/' },
    },
    {
      name: 'operator-uses-relay-exports',
      comment: 'Operator and e2e code, tests included, reach the relay only through the @sluice/relay package exports.',
      severity: 'error',
      from: { path: '^(operator/(src|test)|e2e/src)/' },
      to: { path: '^relay/', dependencyTypesNot: ['npm', 'npm-dev', 'npm-no-pkg', 'aliased-workspace', 'aliased'] },
    },
    {
      name: 'bench-uses-workspace-exports',
      comment: 'Benchmarks reach the relay and the operator only through their package exports, as any other client does.',
      severity: 'error',
      from: { path: '^bench/' },
      to: {
        path: '^(relay|operator|e2e)/',
        dependencyTypesNot: ['npm', 'npm-dev', 'npm-no-pkg', 'aliased-workspace', 'aliased'],
      },
    },
    {
      name: 'no-import-cycles',
      comment:
        'No module imports itself through others, type-only imports included: a type two modules share lives in a module of its own (mime/scan-result.ts, build/users.ts, bench/environment.ts).',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    combinedDependencies: true,
  },
};
