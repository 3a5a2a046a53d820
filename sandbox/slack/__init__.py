"""Local Slack emulator: Web API, response_urls, signed delivery to the bot, text transcripts.

- `model.SlackWorkspace(clock=...)`: the state (seeded with alice/bob/carol, #ops, #ops-alerts,
  private #secret) and assertion helpers (`calls`, `channel_messages`, `thread`, `ephemerals`).
- `app.create_app(workspace, bot_token=...)`: the ASGI app (`/api/<method>`, `/response/<id>`,
  `/_emu/...`).
- `serve.running_slack(workspace)`: serve it on a loopback port in-process.
- `deliver.Deliverer(workspace, bot_url, signing_secret)`: signed slash commands and clicks.
- `render.render_channel(workspace, channel_id, user=...)`: a readable transcript.
"""
