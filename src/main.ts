// `npm start`: check the settings, migrate the database, start the engine, the scheduler and the local web
// chat, and print its URL. SIGTERM/SIGINT: stop taking work, let running work finish or checkpoint, exit.
import { startApp, type FrontEnd } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './log.ts';
import { SlackConfigError, slackConfigFromEnv } from './chat/slack/config.ts';
import { SlackFrontEnd } from './chat/slack/front-end.ts';
import { DiscordConfigError, isDiscordEnabled, parseDiscordConfig } from './chat/discord/config.ts';
import { discordFrontEnd } from './chat/discord/front-end.ts';

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\nSee the README's Configuration section.\n`);
    process.exit(1);
  }
  throw err;
}

// chat front ends whose settings are present
const frontEnds: FrontEnd[] = [];
try {
  const slack = slackConfigFromEnv(process.env);
  if (slack) frontEnds.push(new SlackFrontEnd(slack));
} catch (err) {
  if (err instanceof SlackConfigError) {
    process.stderr.write(`${err.message}\nSee the README's Slack section.\n`);
    process.exit(1);
  }
  throw err;
}

try {
  if (isDiscordEnabled(process.env)) frontEnds.push(discordFrontEnd(parseDiscordConfig(process.env)));
} catch (err) {
  if (err instanceof DiscordConfigError) {
    process.stderr.write(`${err.message}\nSee the README's Discord section.\n`);
    process.exit(1);
  }
  throw err;
}

const log = createLogger(config.logLevel);
const app = await startApp(config, { log, frontEnds }).catch((err: Error) => {
  log.fatal({ err }, 'could not start');
  process.stderr.write(`perfusion-bot could not start: ${err.message}\n`);
  process.exit(1);
});

if (app.chat) {
  process.stdout.write(`\nperfusion-bot is running. Local chat: ${app.chat.url}\n` +
    (config.modelDir ? `Model: ${config.modelDir}\n` : 'Model: the built-in demo model (set MODEL_DIR to real Stable Diffusion 1.5 weights)\n') + '\n');
}

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) { log.warn('second signal: exiting now'); process.exit(1); }
    stopping = true;
    log.info({ signal }, 'shutting down: no new work; running jobs finish or checkpoint');
    app.stop().then(() => { log.info('stopped cleanly'); process.exit(0); }, (err) => { log.error({ err }, 'shutdown failed'); process.exit(1); });
  });
}
