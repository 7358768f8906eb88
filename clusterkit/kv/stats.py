"""What a KV server counts: requests, migrations, replication, repair and collection."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stats:
    sets: int = 0
    gets: int = 0
    forwarded: int = 0
    refused: int = 0
    migrations: int = 0  # partitions copied in and confirmed
    keys_migrated: int = 0
    dropped: int = 0  # partitions released after the new owners confirmed
    replicated: int = 0  # ASYNC records acknowledged by a replica
    repaired: int = 0  # records that anti-entropy brought here (a copy a write had missed)
    collected: int = 0  # tombstones removed (every owner had them)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
