"""Operating the bot: metrics, log lines, the observe hooks the other layers call, and the
audit archive shipped to Azure Blob.

May import: bot.core and bot.state (observe reads queue depths; archive reads the audit).
Never bot.kernel, handlers or the doors.
"""
