"""Local Slack emulator: Web API, response_urls, signed delivery to the bot, text transcripts.

- `model.SlackWorkspace(clock=...)`: the state (seeded with alice/bob/carol, #ops, #ops-alerts,
  private #secret) and assertion helpers (`calls`, `channel_messages`, `thread`, `ephemerals`).
- `app.create_app(workspace, bot_token=...)`: the ASGI app (`/api/<method>`, `/response/<id>`,
  `/_emu/...`).
- `serve.running_slack(workspace)`: serve it on a loopback port in-process.
- `deliver.Deliverer(workspace, bot_url, signing_secret)`: signed slash commands and clicks,
  `app_home_opened` events (`open_home`) and Home tab clicks (`click_home`), over HTTP or
  Socket Mode.
- `views`: the Home tab (`views.publish`) and DMs (`conversations.open`), checked as Slack does;
  `scopes`: which bot scope each method needs (`missing_scope`), the manifest's scopes by default.
- `render.render_channel(workspace, channel_id, user=...)`: a readable transcript.
"""
