"""The sandbox's web view: the emulated Slack workspace in a browser (`create_web_app`)."""
