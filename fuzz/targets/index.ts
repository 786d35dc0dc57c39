// The fuzz targets by name. Each is loaded only after coverage has started, and its
// coverage list names the scripts (URL substrings) whose blocks guide the search: the
// relay's code and the libraries that parse the same input.
import type { FuzzTarget } from '../engine/fuzz-loop.ts';

export interface TargetEntry {
  coverage: readonly string[];
  load(options: { trace: boolean }): Promise<FuzzTarget>;
}

const ATTACHMENT_COVERAGE = [
  '/relay/src/mime/',
  '/node_modules/mailsplit/',
  '/node_modules/libmime/',
  '/node_modules/libqp/',
  '/node_modules/libbase64/',
];

export const TARGETS: Readonly<Record<string, TargetEntry>> = {
  'proxy-header': {
    coverage: ['/relay/src/smtp/proxy-protocol.ts'],
    load: async () => (await import('./proxy-header.ts')).target,
  },
  'zip-scan': {
    coverage: ['/relay/src/mime/'],
    load: async () => (await import('./zip-scan.ts')).target,
  },
  'attachment-scan': {
    coverage: ATTACHMENT_COVERAGE,
    load: async () => (await import('./attachment-scan.ts')).target,
  },
  // fails today: see fuzz/README.md, open findings
  'attachment-scan-chunking': {
    coverage: ATTACHMENT_COVERAGE,
    load: async () => (await import('./attachment-scan.ts')).chunkingTarget,
  },
  'attachment-scan-plain-text': {
    coverage: ATTACHMENT_COVERAGE,
    load: async () => (await import('./attachment-scan.ts')).plainTextTarget,
  },
  'config-load': {
    coverage: ['/relay/src/config/', '/node_modules/yaml/'],
    load: async () => (await import('./config-load.ts')).target,
  },
  'smtp-session': {
    coverage: ['/relay/src/smtp/', '/relay/src/policy/', '/relay/src/auth/', '/node_modules/smtp-server/'],
    load: async (options) => (await import('./smtp-session.ts')).createTarget(options),
  },
};
