"""Client.py's parts, each one concern: ``conversation`` (what the client knows and does next,
without I/O), ``link`` (the connection), ``session`` (the two put together, in one thread),
``terminal`` (the input line and what is printed above it, or plain lines when scripted) and
``completion`` (Tab)."""
