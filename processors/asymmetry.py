"""Asymmetric routing: conversations whose two directions cross different interconnect links, or whose return
direction is never seen on any monitored link, counted per partner from `flows_raw`.

A conversation is one 5-tuple seen from the domestic side: (protocol, domestic address and port, remote address
and port), whatever link saw it and whichever end the agent took for the initiator. Per conversation the query
collects the links that carried packets toward the partner and the links that carried packets from it:

- symmetric: both directions seen, on the same set of links;
- asymmetric: both directions seen, on different sets of links (some link carries one direction only);
- one-way: one direction only on every monitored link. For TCP, a one-way conversation whose seen direction
  carries the ACK flag was answered over a path not monitored here (the other end's packets were acknowledged),
  so it counts as asymmetric evidence (`one_way_answered`); a bare SYN with no answer is a failed connection or
  a scan, not a routing fact. Other protocols are often one-way by nature (and router exports give one record
  per direction, which the grouping joins again), so their one-way count is shown but proves nothing alone.

Cost: one pass over the range's `flows_raw` rows (read by the sort key's time prefix) and a hash aggregation whose
memory grows with the number of distinct conversations (docs/partners.md gives a measured figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processors.queries import _FLOW_RANGE

TCP = 6
ACK = 0x10


@dataclass(frozen=True)
class LinkPair:
    """Conversations of one partner whose packets toward it crossed `links_out` and back crossed `links_in`."""

    partner: str
    links_out: tuple[str, ...]  # empty: nothing toward the partner seen
    links_in: tuple[str, ...]  # empty: nothing from the partner seen
    tcp_answered: bool  # one-way TCP whose seen direction carries ACK (answered elsewhere)
    conversations: int  # sampling-corrected
    bytes: int  # sampling-corrected, both directions

    @property
    def kind(self) -> str:
        if not self.links_out or not self.links_in:
            return "one-way"
        return "symmetric" if self.links_out == self.links_in else "asymmetric"


@dataclass(frozen=True)
class PartnerAsymmetry:
    partner: str
    conversations: int
    symmetric: int
    asymmetric: int  # both directions seen, on different links
    one_way: int  # one direction only, every protocol
    one_way_answered: int  # of which TCP answered over an unmonitored path
    asymmetric_bytes: int  # bytes of the asymmetric and the answered one-way conversations

    @property
    def share(self) -> float:
        """Asymmetric evidence (different links, or TCP answered elsewhere) over the conversations."""
        return (self.asymmetric + self.one_way_answered) / self.conversations if self.conversations else 0.0


def link_pairs(client: Any, db: str, start_ms: int, end_ms: int) -> list[LinkPair]:
    """Conversations that started in [start_ms, end_ms) per partner and (links toward it, links back)."""
    # Orientation from the domestic side: for egress the initiator (src) is domestic, for ingress the responder.
    out_pkts = "if(direction = 'egress', packets_fwd, packets_rev)"
    in_pkts = "if(direction = 'egress', packets_rev, packets_fwd)"
    # One-way conversations: every packet seen went the same way, so the flags of all of them are that way's.
    seen_flags = "bitOr(if(packets_fwd > 0, tcp_flags_fwd, 0), if(packets_rev > 0, tcp_flags_rev, 0))"
    sql = f"""
        SELECT partner, links_out, links_in,
               protocol = {TCP} AND (empty(links_out) OR empty(links_in)) AND bitAnd(flags, {ACK}) != 0
                 AS answered,
               sum(weight), sum(b)
        FROM (
            SELECT argMin(partner, first_ns) AS partner, protocol,
                   arraySort(groupUniqArrayIf(toString(link_id), {out_pkts} > 0)) AS links_out,
                   arraySort(groupUniqArrayIf(toString(link_id), {in_pkts} > 0)) AS links_in,
                   groupBitOr(toUInt8({seen_flags})) AS flags,
                   max(sampling_rate) AS weight,
                   sum((bytes_fwd + bytes_rev) * sampling_rate) AS b
            FROM {db}.flows_raw
            WHERE {_FLOW_RANGE} AND direction IN ('egress', 'ingress')
            GROUP BY protocol,
                     if(direction = 'egress', src_ip, dst_ip), if(direction = 'egress', src_port, dst_port),
                     if(direction = 'egress', dst_ip, src_ip), if(direction = 'egress', dst_port, src_port)
        )
        GROUP BY partner, links_out, links_in, answered
        ORDER BY partner, links_out, links_in, answered
    """
    rows = client.query(sql, parameters={"s": start_ms, "e": end_ms}).result_rows
    return [LinkPair(str(p), tuple(lo), tuple(li), bool(a), int(n), int(b)) for p, lo, li, a, n, b in rows]


def per_partner(pairs: Sequence[LinkPair]) -> list[PartnerAsymmetry]:
    totals: dict[str, list[int]] = {}
    for x in pairs:
        t = totals.setdefault(x.partner, [0] * 6)
        t[0] += x.conversations
        if x.kind == "symmetric":
            t[1] += x.conversations
        elif x.kind == "asymmetric":
            t[2] += x.conversations
            t[5] += x.bytes
        else:
            t[3] += x.conversations
            if x.tcp_answered:
                t[4] += x.conversations
                t[5] += x.bytes
    return [PartnerAsymmetry(p, *t) for p, t in sorted(totals.items())]


@dataclass(frozen=True)
class LinkDirections:
    """Per link: conversations whose packets toward the partner crossed it, and those whose packets back did."""

    link_id: str
    toward: int
    back: int

    @property
    def one_direction(self) -> str | None:
        """ "toward partner only" / "back only" for a link that carries one direction of every conversation."""
        if self.toward and not self.back:
            return "toward partner only"
        if self.back and not self.toward:
            return "back only"
        return None


def link_directions(pairs: Sequence[LinkPair]) -> list[LinkDirections]:
    toward: dict[str, int] = {}
    back: dict[str, int] = {}
    for x in pairs:
        for link in x.links_out:
            toward[link] = toward.get(link, 0) + x.conversations
        for link in x.links_in:
            back[link] = back.get(link, 0) + x.conversations
    return [LinkDirections(k, toward.get(k, 0), back.get(k, 0)) for k in sorted(toward.keys() | back.keys())]


# --- Presentation (shared by the text report and the HTML page) -------------------------------------------------

ASYM_HEAD = ("partner", "conversations", "symmetric", "asymmetric", "one-way", "one-way TCP answered", "asym share",
             "asym MB")  # fmt: skip
PAIR_HEAD = ("partner", "toward partner via", "back via", "conversations", "MB")
ASYM_NOTE = (
    "Asymmetric routing (conversations that started in the range, flows_raw): asymmetric = both directions seen,"
    " on different links; one-way = one direction only on every monitored link; one-way TCP answered = of those,"
    " TCP whose seen direction acknowledges the unseen one (it came back over an unmonitored path). asym share ="
    " (asymmetric + one-way TCP answered) / conversations."
)


def asymmetry_rows(rows: Sequence[PartnerAsymmetry]) -> list[tuple[str, ...]]:
    return [
        (r.partner, str(r.conversations), str(r.symmetric), str(r.asymmetric), str(r.one_way),
         str(r.one_way_answered), f"{r.share * 100:.1f}%", f"{r.asymmetric_bytes / 1e6:.3f}")
        for r in rows
    ]  # fmt: skip


def one_direction_line(pairs: Sequence[LinkPair]) -> str | None:
    """`Links that carry one direction only: jp-2 back only (5 conversations), ...`, or None when none does."""
    links = [d for d in link_directions(pairs) if d.one_direction]
    if not links:
        return None
    counts = [d.toward or d.back for d in links]
    parts = [
        f"{d.link_id} {d.one_direction} ({n} conversation{'s' * (n != 1)})" for d, n in zip(links, counts, strict=True)
    ]
    return "Links that carry one direction only: " + ", ".join(parts) + "."


def pair_rows(pairs: Sequence[LinkPair], limit: int = 10) -> list[tuple[str, ...]]:
    """The link pairs of asymmetric and answered one-way conversations, most conversations first."""
    chosen = [x for x in pairs if x.kind == "asymmetric" or x.tcp_answered]
    chosen.sort(key=lambda x: (-x.conversations, x.partner, x.links_out, x.links_in))
    return [
        (x.partner, ",".join(x.links_out) or "(not seen)", ",".join(x.links_in) or "(not seen)",
         str(x.conversations), f"{x.bytes / 1e6:.3f}")
        for x in chosen[:limit]
    ]  # fmt: skip
