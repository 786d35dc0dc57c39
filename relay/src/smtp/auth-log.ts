// How a username given to AUTH appears in logs. A known user is named. A name that is no
// user may be a password typed into the wrong field, or an attacker's text of any length:
// it is logged only as a keyed hash (this process's random key, so it cannot be looked up
// in a dictionary), which still shows that repeated attempts used the same name.
import { createHmac, randomBytes } from 'node:crypto';

const KEY = randomBytes(32);

/** Log fields for an AUTH username: { user } when it is a known user, else { unknownUser }. */
export function authUserFields(username: string, known: boolean): { user: string } | { unknownUser: string } {
  if (known) return { user: username };
  return { unknownUser: createHmac('sha256', KEY).update(username).digest('hex').slice(0, 16) };
}
