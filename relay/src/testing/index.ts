export * from './harness.ts';
export * from './smtp-client.ts';
