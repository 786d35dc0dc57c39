// A test that needs a tool the machine may lack (a Debian package, a built binary) is
// skipped with the reason on a developer's machine, but under CI (CI set, as .ci/run
// and most CI systems do) a missing tool fails the run: `make test` installs every
// one, so a skip there would hide a broken install step.

/** The skip reason for node:test, false when nothing is missing; throws under CI. */
export function skipUnlessPresent(missing: string | false): string | false {
  if (missing && process.env.CI) {
    throw new Error(`a tool the tests need is missing under CI: ${missing}`);
  }
  return missing;
}
