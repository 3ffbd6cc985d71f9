"""The server's I/O shell: listener, client threads, fan-out, room and console.

``Server.py`` wires these together; ``protocol`` and ``formatting`` hold the
pure parts they use.
"""
