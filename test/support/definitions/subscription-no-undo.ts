/** The reference definition without `undo` (and under another name): undo is refused for its runs. */
import subscriptionVersion from '../../../examples/subscription-version.ts';

const { undo: _undo, ...withoutUndo } = subscriptionVersion;
export default { ...withoutUndo, name: 'subscription-no-undo' };
