"""The programs' I/O and the room's rules.

The server's parts are the modules here (``rules`` and ``effects`` decide,
``room`` holds the lock and carries the effects out, the rest are the
connections, the fan-out, storage, the bus and the console) with the
``web`` front door and the ``cluster`` (Redis) adapter as packages; the
client's parts are in ``client``. ``Server.py`` and ``Client.py`` wire them
up; ``protocol`` and ``formatting`` hold the pure parts they use.
"""
