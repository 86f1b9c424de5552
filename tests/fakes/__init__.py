"""In-process fakes of the outside services Billhive talks to, for tests.

Each fake runs a real HTTP server on 127.0.0.1 (port 0) so that production
clients are exercised through their real HTTP stack. Import the one you need,
e.g. ``from tests.fakes.connectwise import FakeConnectWise``.
"""
