"""The browser front end: a conversation server (protocol, session bridge, HTTP +
WebSocket) that serves the page in ``web/``; see ``app.py``."""
