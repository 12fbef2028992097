/** `tranche serve`: one service instance until SIGTERM or SIGINT. */
import { startService } from '../../service.ts';
import type { CommandContext } from '../context.ts';

export async function serveCommand(ctx: CommandContext): Promise<void> {
  const service = await startService(ctx.config, ctx.log);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      ctx.log.info({ signal }, 'signal received');
      service.stop().then(() => resolve(), () => resolve());
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
