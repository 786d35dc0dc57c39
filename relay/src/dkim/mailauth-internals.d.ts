// The parts of mailauth that Sluice uses below its typed API: the DKIM signer's pieces the relay
// signs with, and the DMARC record lookup the operator's DNS checks read (no types ship for them).
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
    /** tldts options of mailauth's organizational-domain lookups */
    TLDTS_OPTS: { allowIcannDomains: boolean; allowPrivateDomains: boolean };
  };
  export default tools;
}
declare module 'mailauth/lib/dmarc/get-dmarc-record.js' {
  /** The parsed record (tags lower-cased), false when none applies. */
  type DmarcRecord = { rr: string; isOrgRecord: boolean; p?: string; sp?: string } & Record<string, unknown>;
  function getDmarcRecord(
    domain: string,
    resolver: (name: string, type: string) => Promise<unknown>,
  ): Promise<DmarcRecord | false>;
  export default getDmarcRecord;
}
