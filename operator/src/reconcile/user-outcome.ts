// What a policy's reconcile made of one SmtpUser (ready or not, and why), as its status is
// written; in a module of its own so the status writer and the usage and selection rules
// that shape it need not import each other.
import type { UserOutcome } from '../build/users.ts';

export type Outcome = Omit<UserOutcome, 'name'>;
