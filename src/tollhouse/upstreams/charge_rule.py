"""Which upstream answers keep a charge: "2xx" by default, per route "2xx,304" and the like.

A held cost (credits, or quota units on /gw) is captured only when the upstream's whole answer
reached the client with a status the rule lists; every other ending releases it — a 4xx
(400, 401, 404, 422, 429), a redirect, a timeout, an unreachable upstream, our own failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TERM = re.compile(r"^(?:([1-5])xx|([1-5][0-9]{2}))$")


@dataclass(frozen=True, slots=True)
class ChargeRule:
    classes: frozenset[int]
    codes: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> ChargeRule:
        """ "2xx", "2xx,304", "200,201": ValueError on anything else."""
        classes: set[int] = set()
        codes: set[int] = set()
        for term in text.lower().split(","):
            match = _TERM.match(term.strip())
            if match is None:
                raise ValueError(f"charge_on: {term.strip()!r} is not a status or class (2xx)")
            if match.group(1):
                classes.add(int(match.group(1)))
            else:
                codes.add(int(match.group(2)))
        return cls(frozenset(classes), frozenset(codes))

    def keeps(self, status: int | None) -> bool:
        """Whether a call that ended with `status` (None: no complete answer) is paid for."""
        if status is None:
            return False
        return status in self.codes or status // 100 in self.classes


DELIVERED = ChargeRule.parse("2xx")
