"""Whether this process still takes new work: readiness turns false once draining begins.

An orchestrator (or a load balancer's health check) stops routing to a replica whose
/health/ready answers 503, while the replica finishes what it has already accepted.
"""

from __future__ import annotations


class Drain:
    def __init__(self) -> None:
        self.draining = False

    def begin(self) -> None:
        """From now on readiness is false; requests already accepted run to their end."""
        self.draining = True
