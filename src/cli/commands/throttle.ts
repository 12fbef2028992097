/**
 * `tranche throttle [ROWS_PER_SECOND | --unlimited | --reset]`: the global limit on rows
 * produced per second, shared by every instance through Redis and followed at the next page.
 */
import { getThrottleLimit, setThrottleLimit } from '../../coordination/throttle.ts';
import { ServiceUnavailableError, UserError } from '../../errors.ts';
import type { CommandContext } from '../context.ts';

export async function throttleCommand(
  ctx: CommandContext,
  limit: number | undefined,
  options: { unlimited?: boolean; reset?: boolean; json?: boolean },
): Promise<void> {
  const chosen = [limit !== undefined, options.unlimited === true, options.reset === true].filter(Boolean).length;
  if (chosen > 1) throw new UserError('give one of ROWS_PER_SECOND, --unlimited or --reset');
  const { config } = ctx;
  const redis = ctx.openCoordination().client;
  try {
    if (limit !== undefined) await setThrottleLimit(redis, config.redisPrefix, limit);
    else if (options.unlimited) await setThrottleLimit(redis, config.redisPrefix, 0);
    else if (options.reset) await setThrottleLimit(redis, config.redisPrefix, null);
    const set = await getThrottleLimit(redis, config.redisPrefix);
    const effective = set ?? config.throttleRowsPerSecond;
    const source = set === null ? 'THROTTLE_ROWS_PER_SECOND' : 'set with tranche throttle';
    if (options.json) {
      console.log(JSON.stringify({ rowsPerSecond: effective, unlimited: effective === 0, source: set === null ? 'config' : 'redis' }));
    } else {
      console.log(`throttle: ${effective === 0 ? 'unlimited' : `${effective.toLocaleString('en-US')} rows/s`} for every instance (${source})`);
    }
  } catch (error) {
    if (error instanceof RangeError) throw new UserError(error.message);
    throw new ServiceUnavailableError(`cannot reach Redis at ${config.redisUrl}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
