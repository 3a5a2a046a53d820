"""The only code in the bot that speaks HTTP to a cloud."""
