// What the SMTP front needs from the relay that runs it: one port per stage, each declared
// beside its stage (stages/*.ts), so a stage is given only what it uses. Relay provides all
// of them, and the refusal recorder's port.
import type { DataPort } from './receive-message.ts';
import type { RefusalPort } from './refusals.ts';
import type { AuthPort } from './stages/auth.ts';
import type { ConnectPort } from './stages/connect.ts';
import type { MailPort } from './stages/mail.ts';
import type { RcptPort } from './stages/rcpt.ts';

/** Everything the SMTP front uses: what the adapter hands each stage its port from. */
export type RelayRuntime = ConnectPort & AuthPort & MailPort & RcptPort & DataPort & RefusalPort;
