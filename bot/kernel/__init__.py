"""Running one command: the Context a handler gets, the Dispatcher that parses, checks
policy and calls the handler, and the process-wide shutdown flag long work polls.

May import: bot.core, bot.state, bot.ops. Never handlers or the doors: the handler table is
given to the Dispatcher by the wiring (bot/app.py).
"""
