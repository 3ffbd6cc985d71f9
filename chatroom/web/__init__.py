"""The web front door: the room for browsers, a page and its WebSocket (``Server.py --web-port``).

``listener`` is the I/O (HTTP with h11, then the WebSocket with wsproto, each
browser running the same ``chatroom.session.Session`` as a TCP client),
``routes`` what each HTTP request gets, ``rendering`` the browsers' form of
the room's lines, and ``static/`` the page itself.
"""
