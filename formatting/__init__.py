"""Text to terminal, free of I/O: markup to ANSI, colours and sanitising."""
