"""clusterkit.net: the asyncio driver (msgpack TCP frames, on-disk log, HTTP API). Coming in its own issue."""
