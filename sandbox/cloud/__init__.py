"""Simulated OpenStack/Rackspace cloud (Keystone, Nova, Glance) for demos, tests and benchmarks.

`model.World` is the in-memory state, `app.create_app(world)` the ASGI app, `serve` runs it.
"""
