// The operator's release and the relay image that belongs to it: a RelayPolicy without
// spec.image runs this one, so upgrading the operator moves the relays along (a test
// holds the version equal to package.json and the chart's appVersion).
export const OPERATOR_VERSION = '0.1.0';

export const DEFAULT_RELAY_REPOSITORY = 'ghcr.io/sluice-dev/relay';

/** The relay image of this operator's release, from a repository (a mirror) or the default. */
export function relayImage(repository: string = DEFAULT_RELAY_REPOSITORY): string {
  return `${repository}:${OPERATOR_VERSION}`;
}

/**
 * What the CRDs up to 0.1.0 wrote into spec.image of every RelayPolicy at creation (a
 * schema default). Such a value was never chosen by anyone, so it pins nothing: those
 * policies follow the operator's release like policies without spec.image.
 */
export const FORMER_DEFAULT_RELAY_IMAGES: readonly string[] = ['ghcr.io/sluice-dev/relay:0.1.0'];
