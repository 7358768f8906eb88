"""The KV port's wire constants, shared by the node's side (:mod:`.kv_service`) and the client SDK
(:mod:`.client`): a client opens with ``[CLIENT_HELLO, CLIENT_VERSION, cluster(, token)]`` and is
answered ``[CLIENT_HELLO, CLIENT_VERSION, node_id]`` (or a refusal in the fourth field)."""

from __future__ import annotations

CLIENT_HELLO = 20
CLIENT_VERSION = 1
KV_MAX_FRAME = 64 << 20
# A connection's first frame is a hello of a few hundred bytes: a stranger announcing megabytes
# there is closed before its body is read (frames up to KV_MAX_FRAME come only after the hello).
HELLO_MAX_FRAME = 64 << 10
