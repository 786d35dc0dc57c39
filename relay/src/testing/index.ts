export * from './dns-server.ts';
export * from './harness.ts';
export * from './json-keys.ts';
export * from './redis-server.ts';
export * from './smtp-client.ts';
export * from './smtp-sink.ts';
export * from './traffic.ts';
export * from './wait-for.ts';
