// What DATA decides about the message once it has streamed past the scanner: too big for
// maxMessageBytes first, then the scanner's verdict (a blocked attachment, a header or MIME
// structure over its bound, a message that does not parse). Pure: the stage streams,
// spools and removes what a refusal leaves.
import type { LimitsConfig } from '../config/schema.ts';
import type { ScanResult } from '../mime/scan-result.ts';
import type { MimeBound } from '../mime/splitter.ts';

/** The reply names this decision uses; the SMTP front's reply table has each of them. */
export type ContentRefusal =
  | 'MESSAGE_TOO_BIG'
  | 'BLOCKED_ATTACHMENT'
  | 'HEADER_TOO_BIG'
  | 'MIME_TOO_COMPLEX'
  | 'MALFORMED_MESSAGE';

export type ContentDecision =
  | { kind: 'accept' }
  | { kind: 'refuse'; refusal: ContentRefusal; vars: Record<string, string | number> };

/** The reply to a message over one of the MIME bounds. */
const OVER_LIMIT: Record<MimeBound, { refusal: 'HEADER_TOO_BIG' | 'MIME_TOO_COMPLEX'; what: string }> = {
  maxHeaderBytes: { refusal: 'HEADER_TOO_BIG', what: 'bytes' },
  maxHeaderLines: { refusal: 'HEADER_TOO_BIG', what: 'lines' },
  maxMimeParts: { refusal: 'MIME_TOO_COMPLEX', what: 'MIME parts' },
  maxMimeDepth: { refusal: 'MIME_TOO_COMPLEX', what: 'levels of MIME nesting' },
  maxMimeParameters: {
    refusal: 'MIME_TOO_COMPLEX',
    what: 'parameters in the Content-Type and Content-Disposition fields of a part',
  },
};

export function decideContent(
  facts: { overSize: boolean; scan: ScanResult },
  limits: Pick<LimitsConfig, 'maxMessageBytes'>,
): ContentDecision {
  if (facts.overSize)
    return { kind: 'refuse', refusal: 'MESSAGE_TOO_BIG', vars: { limit: limits.maxMessageBytes } };
  const { scan } = facts;
  switch (scan.kind) {
    case 'clean':
      return { kind: 'accept' };
    case 'blocked':
      // the name is the sender's text: it is quoted in the reply, so it holds no quote (the
      // reply table escapes control and bidi characters and bounds its length)
      return {
        kind: 'refuse',
        refusal: 'BLOCKED_ATTACHMENT',
        vars: { filename: scan.filename.replace(/"/g, "'"), extension: scan.extension },
      };
    case 'over-limit': {
      const { refusal, what } = OVER_LIMIT[scan.bound];
      return { kind: 'refuse', refusal, vars: { limit: scan.limit, what } };
    }
    case 'malformed':
      return { kind: 'refuse', refusal: 'MALFORMED_MESSAGE', vars: { detail: scan.detail } };
  }
}
