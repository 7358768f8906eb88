# One ClusterKit node: `clusterkit node`, configured by the seed's environment variables
# (NODE_ID, NODE_NAME, HTTP_ADDR, RAFT_ADDR, JOIN_ADDR, DATA_DIR, BOOTSTRAP, CLUSTER_NAME,
# PARTITION_COUNT, REPLICATION_FACTOR, CLUSTER_SECRET_FILE). See docker-compose.yml for a
# 3-node cluster.
#
#   docker build -t clusterkit .
#   docker run --rm -p 8080:8080 -e NODE_ID=node-1 clusterkit
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY setup.py setup.cfg pyproject.toml README.md ./
COPY clusterkit ./clusterkit
COPY sim ./sim
COPY net ./net
RUN pip install . && rm -rf /src

# Not root; the data directory belongs to the node's user, and a named volume mounted on it
# starts with that owner.
RUN useradd --system --uid 10001 --home-dir /data clusterkit \
    && mkdir -p /data && chown clusterkit /data
USER clusterkit
WORKDIR /data
VOLUME /data

# A single node by default: HTTP on every interface, Raft on HTTP port + 921 (9001), data in /data.
# In a cluster, HTTP_ADDR and RAFT_ADDR must be names the other nodes can reach (node-1:8080):
# HTTP_ADDR is also the address followers forward writes and joins to.
ENV HTTP_ADDR=:8080 \
    DATA_DIR=/data
EXPOSE 8080 9001

# /health answers 200 once the node's Raft is running. The image has no curl: Python asks,
# at the host and port of HTTP_ADDR (":8080" means this container).
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import os, urllib.request; h, _, p = os.environ.get('HTTP_ADDR', ':8080').rpartition(':'); urllib.request.urlopen('http://' + (h or '127.0.0.1') + ':' + p + '/health', timeout=3)"]

# docker stop sends SIGTERM: the node flushes its log and closes cleanly.
STOPSIGNAL SIGTERM
ENTRYPOINT ["clusterkit", "node"]
