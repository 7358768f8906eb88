"""The reference KV store, sans-IO: messages, records, quorum operations, the per-node server.

A package of its own (not a namespace folder): ``pip install .`` must put it in the wheel, since the
node's KV service and the SDK import it.
"""
