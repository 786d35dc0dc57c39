import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type LabelSelector, matchesSelector, selectorText } from './user-selection.ts';

describe('userSelector', () => {
  it('matches labels as the API server does', () => {
    const selector: LabelSelector = {
      matchLabels: { tier: 'gold' },
      matchExpressions: [
        { key: 'region', operator: 'NotIn', values: ['cn'] },
        { key: 'legacy', operator: 'DoesNotExist' },
        { key: 'team', operator: 'Exists' },
      ],
    };
    assert.equal(
      matchesSelector({ tier: 'gold', team: 'a' }, selector),
      true,
      'NotIn matches an absent label',
    );
    assert.equal(matchesSelector({ tier: 'gold', team: 'a', region: 'cn' }, selector), false);
    assert.equal(matchesSelector({ tier: 'gold', team: 'a', legacy: '' }, selector), false);
    assert.equal(matchesSelector({ tier: 'gold' }, selector), false, 'Exists needs the label');
    assert.equal(matchesSelector(undefined, {}), true, 'an empty selector matches every user');
    assert.equal(selectorText(selector), 'tier=gold,region notin (cn),!legacy,team');
  });
});
