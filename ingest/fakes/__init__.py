"""Fake upstreams for tests and demos: real HTTP servers on 127.0.0.1 that follow the real APIs."""
