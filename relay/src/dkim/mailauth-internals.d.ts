// The parts of mailauth's DKIM signer that Sluice signs with (mailauth ships no types for them).
declare module 'mailauth/lib/dkim/body/index.js' {
  interface BodyHasher {
    update(chunk: Buffer): void;
    digest(encoding: 'base64'): string;
  }
  const body: { dkimBody(canonicalization: string, algorithm: string, maxBodyLength: false): BodyHasher };
  export default body;
}
declare module 'mailauth/lib/tools.js' {
  const tools: {
    formatRelaxedLine(line: Buffer | string, suffix?: string): Buffer;
    formatSignatureHeaderLine(type: 'DKIM', values: Record<string, string | number>, folded: boolean): string;
  };
  export default tools;
}
