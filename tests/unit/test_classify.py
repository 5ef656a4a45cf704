"""PartnerClassifier against addresses of known RIR allocation and hand-written configurations.

Ground truth for the public addresses below is the RIR allocation (APNIC delegated statistics / whois),
which is independent of the code under test; each one is also checked against iptocc in
``test_allocation_ground_truth`` so that a data change in iptocc shows up as that test failing, not as a
confusing classification failure.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from array import array
from typing import Any

import iptocc
import pytest

from ingest.classification import Classification, Classifier
from ingest.classify import UNKNOWN_COUNTRY, PartnerClassifier
from ingest.partners import PartnersConfig

# APNIC: 133.0.0.0/8 is Japanese legacy space administered by JPNIC (133.1.0.0/16: Osaka University).
JP_V4 = "133.1.1.1"
# APNIC/KRNIC: 168.126.0.0/16 is allocated to KT (Korea Telecom); 168.126.63.1 is KT's public resolver.
KR_V4 = "168.126.63.1"
# APNIC: 202.97.0.0/16 is CHINANET backbone (China Telecom), country CN.
CN_V4 = "202.97.1.1"
# APNIC: 2001:200::/32 is WIDE Project (Japan), the first IPv6 allocation APNIC made.
JP_V6 = "2001:200::1"
# APNIC/KRNIC: 2001:2d8::/32 is allocated to KT (Korea).
KR_V6 = "2001:2d8::1"
# APNIC: 240e::/20 is China Telecom (CN).
CN_V6 = "240e::1"
# RIPE NCC: 5.255.255.0/24 is Yandex (RU); Russia is on the Belt and Road list.
RU_V4 = "5.255.255.5"
# ARIN: 8.8.8.0/24 is Google (US): in no default group.
US_V4 = "8.8.8.8"


@pytest.fixture(scope="module")
def default() -> PartnerClassifier:
    return PartnerClassifier(PartnersConfig.default())


def _classifier(groups: dict[str, Any], **extra: Any) -> PartnerClassifier:
    return PartnerClassifier(PartnersConfig.model_validate({"groups": groups, **extra}))


def test_allocation_ground_truth() -> None:
    expected = {JP_V4: "JP", KR_V4: "KR", CN_V4: "CN", JP_V6: "JP", KR_V6: "KR", CN_V6: "CN", RU_V4: "RU"}
    assert {a: iptocc.country_code(a) for a in expected} == expected
    assert iptocc.country_code(US_V4) == "US"


def test_is_a_classifier(default: PartnerClassifier) -> None:
    c: Classifier = default
    assert isinstance(c.classify(CN_V4, JP_V4, 4, "link-0"), Classification)


def test_egress_to_japan(default: PartnerClassifier) -> None:
    assert default.classify(CN_V4, JP_V4, 4, "link-0") == Classification("egress", "japan", "JP", 0, False)


def test_ingress_from_korea(default: PartnerClassifier) -> None:
    assert default.classify(KR_V4, CN_V4, 4, "link-0") == Classification("ingress", "korea", "KR", 0, True)


def test_ipv6(default: PartnerClassifier) -> None:
    assert default.classify(CN_V6, JP_V6, 6, "l") == Classification("egress", "japan", "JP", 0, False)
    assert default.classify(KR_V6, CN_V6, 6, "l") == Classification("ingress", "korea", "KR", 0, True)
    # IPv4-mapped IPv6 is classified as the IPv4 address.
    assert default.classify(f"::ffff:{CN_V4}", JP_V4, 6, "l").partner == "japan"


def test_belt_and_road_and_fallback(default: PartnerClassifier) -> None:
    assert default.classify(CN_V4, RU_V4, 4, "l") == Classification("egress", "belt_and_road", "RU", 0, False)
    assert default.classify(US_V4, CN_V4, 4, "l") == Classification("ingress", "other", "US", 0, True)


def test_domestic_and_transit(default: PartnerClassifier) -> None:
    assert default.classify(CN_V4, CN_V6, 4, "l") == Classification("domestic", "domestic", "CN", 0, False)
    # Neither side domestic: the responder is the remote side.
    assert default.classify(JP_V4, KR_V4, 4, "l") == Classification("transit", "korea", "KR", 0, False)


def test_private_space_is_domestic_by_default(default: PartnerClassifier) -> None:
    for private in (
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.4",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.1.1",
        "fd00::1",
    ):
        assert default.classify(private, JP_V4, 4, "l") == Classification("egress", "japan", "JP", 0, False)
    assert default.classify("10.0.0.1", "10.0.0.2", 4, "l") == Classification(
        "domestic", "domestic", UNKNOWN_COUNTRY, 0, False
    )


def test_private_space_not_domestic_when_configured() -> None:
    c = PartnerClassifier(PartnersConfig.model_validate({"private_is_domestic": False}))
    # Private space is remote now: no country, no group claims it; between two private hosts: transit.
    assert c.classify(CN_V4, "10.0.0.1", 4, "l") == Classification("egress", "other", UNKNOWN_COUNTRY, 0, False)
    assert c.classify("10.0.0.1", "10.0.0.2", 4, "l").direction == "transit"


def test_prefix_override_beats_country_and_carries_asn() -> None:
    # A Korean-allocated block configured as reached through the Japan partner (e.g. a carrier's PoP).
    c = _classifier(
        {
            "japan": {"countries": ["JP"], "prefixes": [{"prefix": "168.126.0.0/16", "asn": 2914}]},
            "korea": {"countries": ["KR"]},
        }
    )
    assert c.classify(CN_V4, KR_V4, 4, "l") == Classification("egress", "japan", "KR", 2914, False)
    # The rest of Korea is still Korea.
    assert c.classify(CN_V4, "211.32.0.1", 4, "l").partner == "korea"


def test_longest_prefix_wins_across_groups() -> None:
    c = _classifier({"japan": {"prefixes": ["2001:db8::/32"]}, "korea": {"prefixes": ["2001:db9::/48"]}})
    assert c.classify(CN_V6, "2001:db8::5", 6, "l").partner == "japan"
    assert c.classify(CN_V6, "2001:db9::5", 6, "l").partner == "korea"


def test_explicit_prefix_beats_private_and_domestic_country() -> None:
    c = _classifier(
        {
            "japan": {"countries": ["JP"], "prefixes": ["10.20.0.0/16"]},  # the partner's side of a link net
            "korea": {"prefixes": ["202.97.1.0/24"]},  # China-allocated but configured as Korean
        },
        domestic={"prefixes": ["203.0.113.0/24"]},  # documentation space made domestic explicitly
    )
    assert c.classify("10.1.1.1", "10.20.0.9", 4, "l") == Classification("egress", "japan", UNKNOWN_COUNTRY, 0, False)
    assert c.classify("203.0.113.7", CN_V4, 4, "l") == Classification("egress", "korea", "CN", 0, False)


def test_link_rule_beats_country_but_not_prefix() -> None:
    c = _classifier(
        {
            "japan": {"countries": ["JP"], "links": ["qd-jp-1"], "prefixes": ["8.8.4.0/24"]},
            "korea": {"countries": ["KR"], "links": ["qd-kr-1"]},
        }
    )
    # US space arriving over the Korean link belongs to korea; Japanese space too (link before country).
    assert c.classify(US_V4, CN_V4, 4, "qd-kr-1") == Classification("ingress", "korea", "US", 0, True)
    assert c.classify(CN_V4, JP_V4, 4, "qd-kr-1").partner == "korea"
    assert c.classify(CN_V4, "8.8.4.4", 4, "qd-kr-1").partner == "japan"
    assert c.classify(CN_V4, US_V4, 4, "unlisted-link").partner == "other"


def test_unparsable_address_is_unknown(default: PartnerClassifier) -> None:
    assert default.classify("not-an-ip", CN_V4, 4, "l") == Classification("unknown", "other", UNKNOWN_COUNTRY, 0, False)


def test_cache_is_bounded_and_used() -> None:
    c = PartnerClassifier(PartnersConfig.default(), cache_size=4)
    for i in range(10):
        c.classify(CN_V4, f"133.1.1.{i}", 4, "l")
    info = c.side.cache_info()
    assert info.currsize == 4 and info.maxsize == 4
    assert info.hits == 9  # CN_V4 after the first flow


def test_partner_of_asn() -> None:
    c = _classifier({"japan": {"asns": [2914, 4713]}, "korea": {"asns": [4766]}})
    assert (c.partner_of_asn(4713), c.partner_of_asn(4766), c.partner_of_asn(1)) == ("japan", "korea", None)


def test_range_tables_decide_as_ipaddress_does() -> None:
    """The bisect tables give ipaddress's own answer on every boundary (and either side) and on random addresses."""
    import ipaddress
    import random

    from ingest.classify import _NO_COUNTRY_V4, _NO_COUNTRY_V6, _SPECIAL_BLOCKS, _has_no_country, _module_networks

    rng = random.Random(8)
    nets = [ipaddress.ip_network(b) for b in _SPECIAL_BLOCKS] + list(_module_networks())
    samples: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for n in nets:
        lo, hi = int(n.network_address), int(n.broadcast_address)
        top = (1 << n.max_prefixlen) - 1
        for v in (lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, rng.randint(lo, hi)):
            if 0 <= v <= top:
                samples.append(ipaddress.ip_address(v) if n.version == 4 else ipaddress.IPv6Address(v))
    samples += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(60_000)]
    samples += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(10_000)]
    samples += [ipaddress.IPv6Address((0x2 << 125) | rng.getrandbits(125)) for _ in range(20_000)]  # 2000::/3
    samples += [ipaddress.IPv6Address((0x2001 << 112) | rng.getrandbits(112 - rng.randint(0, 80))) for _ in range(5000)]
    for ip in samples:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            continue  # the classifier maps these to IPv4 first
        table = _NO_COUNTRY_V4 if ip.version == 4 else _NO_COUNTRY_V6
        assert table(int(ip)) == _has_no_country(ip), ip
        assert table(int(ip)) == (not ip.is_global or ip.is_multicast), ip


def _sides(cls: PartnerClassifier, packed: list[bytes]) -> list[tuple[bool, str, str | None, int]]:
    """`sides_of_packed` of `packed` (either family, any order), its answers back in that order."""
    v4 = [p for p in packed if len(p) == 4]
    v6 = [p for p in packed if len(p) == 16]
    answers, codes = cls.sides_of_packed(b"".join(v4), b"".join(v6))
    idx = array("I", codes)
    assert len(idx) == len(packed) and len(set(answers)) == len(answers)
    by_addr = dict(zip(v4 + v6, (answers[i] for i in idx), strict=True))
    return [by_addr[p] for p in packed]


def test_packed_question_answers_as_the_text_one() -> None:
    """The engine's question (packed bytes, read as integers, many addresses at once) gets the answer `side` gives
    each address's text, and the country lookup is handed the same text, for both families, IPv4-mapped and
    -compatible IPv6, private, documentation, domestic and prefix-listed space."""
    seen: list[str] = []

    def country_of(ip: str) -> str | None:
        seen.append(ip)
        return iptocc.country_code(ip)

    cfg = {
        "groups": {"g": {"countries": ["JP"], "prefixes": [{"prefix": "8.8.8.0/24", "asn": 15169}, "2001:db8:1::/48"]}}
    }
    cls = PartnerClassifier(PartnersConfig.model_validate(cfg), country_of=country_of)
    texts = [JP_V4, KR_V4, CN_V4, RU_V4, US_V4, JP_V6, KR_V6, CN_V6, "10.1.2.3", "192.0.2.1", "0.0.0.0", "8.8.8.8"]
    texts += ["::ffff:133.1.1.1", "::ffff:10.0.0.1", "::133.1.1.1", "::1", "::", "fe80::1", "2001:db8:1::5"]
    texts += ["255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:8.8.8.8", "1.2.3.4", "9.9.9.9"]
    texts += ["::ffff:0:0", "::fffe:1.2.3.4", "0:0:0:1:0:ffff:102:304", "1.0.0.0", "223.255.255.255"]
    expected = []
    for text in texts:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        seen.clear()
        s = cls._side(text)
        assert s is not None
        by_text = seen[:]
        seen.clear()
        assert _sides(cls, [packed]) == [(s.domestic, s.country, s.group, s.asn)], text
        assert seen == by_text, text
        expected.append((s.domestic, s.country, s.group, s.asn))
    # all of them in one question, the families interleaved, some twice
    packed_all = [socket.inet_pton(socket.AF_INET6 if ":" in t else socket.AF_INET, t) for t in texts]
    assert _sides(cls, packed_all + packed_all[::3]) == expected + expected[::3]
    google = (False, "US", "g", 15169)  # by the listed prefix, not by country
    assert _sides(cls, [socket.inet_pton(socket.AF_INET, "8.8.8.8")]) == [google]
    assert _sides(cls, [socket.inet_pton(socket.AF_INET6, "::ffff:8.8.8.8")]) == [google]
    assert cls.sides_of_packed(b"", b"") == ([], b"")
    for v4, v6 in ((b"\x01\x02\x03", b""), (b"", b"\x00" * 15)):
        with pytest.raises(ValueError, match=r"4 \(v4\) and 16 \(v6\) bytes"):
            cls.sides_of_packed(v4, v6)


def test_ipv4_text_for_the_country_lookup_is_the_one_ipaddress_writes() -> None:
    """The country lookup is given `inet_ntoa`'s text of an IPv4 address: the same as ipaddress's, on random and
    edge addresses."""
    rng = random.Random(7)
    seen: list[str] = []

    def country_of(ip: str) -> str | None:
        seen.append(ip)
        return None

    cls = PartnerClassifier(PartnersConfig.default(), country_of=country_of)
    nums = [0, 1, 255, 256, 0x01000000, 0x7F000001, 0xFFFFFFFF] + [rng.getrandbits(32) for _ in range(20000)]
    for n in nums:
        seen.clear()
        cls._country(n, True)
        assert seen == [str(ipaddress.IPv4Address(n))]
