"""Registry events: processing what registries report (`process`), what people read about it
(`messages`), and the `events` command (`listing`)."""
