"""The chat wire protocol, free of I/O: framing, commands, names, wording and the layout of lines."""
