// What AUTH decides once the password was checked: accept, or refuse as a wrong password
// (which counts towards the lockout) or as a suspended account. The handoff account from
// outside its networks is refused as a wrong password would be (handoff-origin.ts), and a
// user suspended by abuse detection like a suspended one. Pure: the stage does the I/O.

/** The reply names this decision uses; the SMTP front's reply table has each of them. */
export type AuthRefusal = 'AUTH_FAILED' | 'AUTH_SUSPENDED';

export type AuthDecision<User> =
  | { kind: 'accept'; user: User }
  | {
      kind: 'refuse';
      refusal: AuthRefusal;
      /** The auth metric's result label. */
      result: 'failure' | 'suspended';
      /** Counts towards the lockout of the username and the client. */
      countsFailure: boolean;
      /** Why, beyond the reply: the handoff account from outside, or an abuse suspension. */
      cause?: 'handoff_from_outside' | 'abuse';
    };

export interface AuthFacts<User> {
  /** The password check: the user, or the authenticator's reason. */
  checked: { ok: true; user: User } | { ok: false; reason: string };
  /** The username is the handoff account and the client is outside its networks. */
  handoffFromOutside: boolean;
  /** Abuse detection suspended the user (abuse.autoSuspend). */
  abuseSuspended: boolean;
}

export function decideAuth<User>(facts: AuthFacts<User>): AuthDecision<User> {
  if (facts.handoffFromOutside) {
    return {
      kind: 'refuse',
      refusal: 'AUTH_FAILED',
      result: 'failure',
      countsFailure: true,
      cause: 'handoff_from_outside',
    };
  }
  if (facts.checked.ok && facts.abuseSuspended) {
    return {
      kind: 'refuse',
      refusal: 'AUTH_SUSPENDED',
      result: 'suspended',
      countsFailure: false,
      cause: 'abuse',
    };
  }
  if (facts.checked.ok) return { kind: 'accept', user: facts.checked.user };
  return facts.checked.reason === 'auth_suspended'
    ? { kind: 'refuse', refusal: 'AUTH_SUSPENDED', result: 'suspended', countsFailure: false }
    : { kind: 'refuse', refusal: 'AUTH_FAILED', result: 'failure', countsFailure: true };
}
