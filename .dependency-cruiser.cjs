// Import rules that keep the mail path one-directional and the workspace packages apart
// (e2e -> operator -> relay, each reached through its exports) (make deps; part of make check).
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
      name: 'packages-through-exports',
      comment:
        'A workspace package (relay, operator, e2e, tools, telemetry, and bench/, fuzz/, scripts/ beside them) reaches another only through its package exports (@sluice/<package>/...), never by a relative path into its folder. fuzz/targets/ is left to the next rule.',
      severity: 'error',
      from: { path: '^(relay|operator|e2e|bench|fuzz|tools|telemetry|scripts)/', pathNot: '^fuzz/targets/' },
      to: {
        path: '^(relay|operator|e2e|bench|fuzz|tools|telemetry|scripts)/',
        pathNot: '^$1/',
        dependencyTypesNot: ['npm', 'npm-dev', 'npm-no-pkg', 'aliased-workspace', 'aliased'],
      },
    },
    {
      name: 'fuzz-targets-reach-relay-internals-only',
      comment:
        'The fuzz targets import relay internals by relative path on purpose: they fuzz parsers (PROXY header, ZIP and attachment scanning, config loading, the SMTP session) below any package interface. That is the one exception; other packages they reach through exports.',
      severity: 'error',
      from: { path: '^fuzz/targets/' },
      to: {
        path: '^(operator|e2e|bench|tools|telemetry|scripts)/',
        dependencyTypesNot: ['npm', 'npm-dev', 'npm-no-pkg', 'aliased-workspace', 'aliased'],
      },
    },
    {
      name: 'operator-never-imports-e2e',
      comment:
        'Workspace dependencies run one way, e2e -> operator -> relay: the operator, its tests and its test kit never import e2e, through @sluice/e2e or otherwise (the control plane both use is @sluice/operator/testing/control-plane).',
      severity: 'error',
      from: { path: '^operator/' },
      // an import of @sluice/e2e that does not resolve is named by its specifier
      to: { path: ['^e2e/', '^@sluice/e2e(/|$)'] },
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
    // resolve @sluice/<package>/<subpath> through the package's "exports", as Node does, so
    // that rules and the cycle check see imports between workspace packages too
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'node', 'default'],
      mainFields: ['module', 'main', 'types'],
    },
  },
};
