"""What the worker's sweep runs on a schedule: `[[retention]]` purges requested, `[[report]]`
reports posted, `[[deployed]] lock_schedule` locks of what runs. Each takes its slot once."""
