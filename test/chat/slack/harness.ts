// A whole bot (startApp: real SQLite store, scheduler, BotCore) with the real Slack front end (real Bolt 5 app)
// talking to the project's fake Slack; requests are signed like Slack signs them.
import { startApp, type App } from '../../../src/app.ts';
import type { JobExecutor } from '../../../src/jobs/executor.ts';
import { slackConfigFromEnv, type SlackConfig } from '../../../src/chat/slack/config.ts';
import { SlackFrontEnd } from '../../../src/chat/slack/front-end.ts';
import { testConfig } from '../../src/helpers.ts';
import type { FakeSlack, LoggedRequest } from './fake-slack.ts';
import { SlackRequestSender, type Workspace } from './signed-requests.ts';

export const SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';

export interface SlackBot {
  app: App;
  slack: SlackFrontEnd;
  config: SlackConfig;
  /** the Request URL (HTTP receiver); empty in Socket Mode */
  url: string;
  /** a signed-request sender as one workspace (default: the fake's own) */
  sender(workspace?: Partial<Workspace>): SlackRequestSender;
}

/** Starts the bot with the Slack front end on 127.0.0.1:0 (HTTP receiver) or in Socket Mode against `fake`. */
export async function startSlackBot(fake: FakeSlack, env: Record<string, string>, opts: { executor?: JobExecutor; socketMode?: boolean } = {}): Promise<SlackBot> {
  const config = slackConfigFromEnv({
    SLACK_BOT_TOKEN: fake.botToken, SLACK_API_URL: fake.apiUrl,
    ...(opts.socketMode ? { SLACK_APP_TOKEN: fake.appToken } : { SLACK_SIGNING_SECRET: SIGNING_SECRET }),
  })!;
  const slack = new SlackFrontEnd(config, { listen: { port: 0, host: '127.0.0.1' }, retries: 0, updateIntervalMs: 50 });
  const app = await startApp(testConfig(env), { frontEnds: [slack], ...(opts.executor ? { executor: opts.executor } : {}) });
  const url = slack.port === null ? '' : `http://127.0.0.1:${slack.port}/slack/events`;
  return {
    app, slack, config, url,
    sender: (workspace = {}) => new SlackRequestSender(url, SIGNING_SECRET, {
      teamId: fake.teamId, teamDomain: fake.teamDomain, appId: fake.appId, ...workspace,
    }),
  };
}

/** The `ts` a chat.postMessage call was answered with. */
export function postedTs(r: LoggedRequest): string {
  return (r.response as { ts: string }).ts;
}

/** The action_ids of a message's buttons. */
export function actionIds(blocks: unknown): string[] {
  return ((blocks ?? []) as Array<{ type: string; elements?: Array<{ action_id?: string }> }>)
    .filter((b) => b.type === 'actions').flatMap((b) => (b.elements ?? []).map((e) => e.action_id ?? ''));
}

/** The mrkdwn text of a message's first section. */
export function sectionText(blocks: unknown): string {
  return ((blocks ?? []) as Array<{ type: string; text?: { text: string } }>).find((b) => b.type === 'section')?.text?.text ?? '';
}
