"""The chat wire protocol, free of I/O: framing, commands, names and wording."""
