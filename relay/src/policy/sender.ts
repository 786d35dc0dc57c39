// Which MAIL FROM addresses a user may use. Patterns are full addresses
// (alice@example.com) or domains (@example.com, or example.com); the domain part
// compares case-insensitively, the local part too (as every real mailbox provider does).

/** True when the user has no sender restriction or the address matches one pattern. */
export function isSenderAllowed(sender: string, allowed: readonly string[] | undefined): boolean {
  if (allowed === undefined) return true;
  const address = sender.trim().toLowerCase();
  const at = address.lastIndexOf('@');
  if (address === '' || at <= 0) return false;
  const domain = address.slice(at + 1);
  return allowed.some((raw) => {
    const pattern = raw.trim().toLowerCase();
    if (pattern.startsWith('@')) return domain === pattern.slice(1);
    if (!pattern.includes('@')) return domain === pattern;
    return address === pattern;
  });
}
