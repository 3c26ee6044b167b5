"""PII redaction: emails, IP addresses and secrets/keys replaced by placeholders, counted per kind.

IP addresses follow bigcode's false-positive rules: the match must parse as
an address, must be public (private, loopback, link-local, reserved and
multicast addresses are not personal), must not be a well-known public DNS
resolver, and must not be a version number ("version 1.2.3.4", "v1.2.3.4").
Generic ``secret = "..."`` assignments are redacted only when the value looks
random (mixed character classes, high entropy), so constants and words stay.

Speed: most code holds none of what a pattern needs, so each pattern runs only where a cheap
necessary condition holds (a literal anchor such as ``AKIA`` or ``-----BEGIN``, a dotted quad of
digits, two hex groups around a colon). The conditions are implied by the patterns, so the spans
found are those of running every pattern over every file (``tests/phase1/test_pii_speed.py``
checks that against the plain passes).
"""
from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass

from megatron_snow.config import Config, setting

KINDS = ("email", "ip_address", "key")


@dataclass
class PIIConfig(Config):
    enabled: bool = setting(True, help="redact personal data (emails, IP addresses, keys)")
    email_placeholder: str = setting("<EMAIL>", help="what an email address becomes")
    ip_placeholder: str = setting("<IP_ADDRESS>", help="what an IP address becomes")
    key_placeholder: str = setting("<KEY>", help="what a key or secret becomes")
    redact_emails: bool = setting(True, help="redact email addresses")
    redact_ips: bool = setting(True, help="redact IP addresses")
    redact_keys: bool = setting(True, help="redact keys and secrets")
    min_secret_entropy: float = setting(3.0, help="bits per char for generic secret assignments", range="[0, 64]")


EMAIL = re.compile(r"(?<![\w.+%-])[A-Za-z0-9][\w.+%-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                  r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\w|\.\w)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){2,7}(?::|(?::?[0-9A-Fa-f]{1,4}))(?![\w:.])"
                  r"|(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}(?![\w:.])")
# "version = 1.2.3.4", "v1.2.3.4", __version__ = "1.2.3.4", AssemblyVersion("1.0.0.0"): not addresses.
VERSION_CONTEXT = re.compile(r"(?:version\w*|\bver|\bv)[\s=:'\"(\[,]*$", re.IGNORECASE)
PUBLIC_DNS = frozenset({
    "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222",
    "208.67.220.220", "76.76.19.19", "76.223.122.150", "94.140.14.14", "94.140.15.15", "8.26.56.26",
    "8.20.247.20", "2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111",
})

KEY_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?"
                               r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("aws_access_key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}(?![A-Z0-9])")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,})\b")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])")),
    ("stripe_key", re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
]
# Literals every match of a key pattern holds (a pattern runs only on a file that has one of them);
# KEY_GATE finds any of them in one pass (a file with none, nearly every file, is done at once).
KEY_ANCHORS: dict[str, tuple[str, ...]] = {
    "private_key": ("PRIVATE KEY-----",), "aws_access_key": ("AKIA", "ASIA", "AGPA", "AIDA", "AROA"),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), "slack_token": ("xox",),
    "google_api_key": ("AIza",), "stripe_key": ("k_live_",), "jwt": (".eyJ",),
}
KEY_GATE = re.compile(r"PRIVATE KEY-----|A(?:KIA|SIA|GPA|IDA|ROA)|gh[pousr]_|github_pat_|xox|AIza|k_live_|\.eyJ")
# Necessary conditions, searched fast (they start with a literal): every IPV4 match holds
# ".D.D.D"; every IPV6 match holds ":H:" (alternative 1) or "::H" (alternative 2), and the stricter
# "H:H:" or "H::H" (IPV6_SITE: where a match may be).
IPV4_GATE = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d")
IPV6_GATE = re.compile(r":[0-9A-Fa-f]{1,4}:|::[0-9A-Fa-f]")
IPV6_SITE = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:|[0-9A-Fa-f]::[0-9A-Fa-f]")
# An IPV6 match is a whole maximal run of [\w:.] (its look-arounds exclude those characters on both
# sides); an EMAIL match starts where the run of [\w.+%-] before its "@" starts. So each pattern is
# tried only there, at the start of the run around a site, with the text before it in view.
_IPV6_RUN_CHAR = re.compile(r"[\w:.]")
_IPV6_RUN = re.compile(r"[\w:.]*")
_EMAIL_LOCAL_CHAR = re.compile(r"[\w.+%-]")
# name = "value" where the name says secret; the value (group 1) is redacted if it looks random.
SECRET_ASSIGN = re.compile(
    r"(?i)(?:secret|token|api[_-]?key|apikey|passw(?:or)?d|access[_-]?key|auth[_-]?key|client[_-]?secret)"
    r"[\w-]*[\"']?\s*[:=]>?\s*[\"']([A-Za-z0-9+/=_\-.]{16,128})[\"']")
# The same pattern without (?i), run over lower-cased ASCII text: ASCII lower-casing keeps every
# position and every character's class ([\w-], [A-Za-z0-9...], quotes, spaces), so the spans are
# those of SECRET_ASSIGN; a literal-led pattern is searched several times faster than (?i).
_SECRET_ASSIGN_LOWER = re.compile(SECRET_ASSIGN.pattern.removeprefix("(?i)"))
# The tail every SECRET_ASSIGN match holds; case plays no part in it for ASCII text (under (?i) the
# value's [A-Za-z] also takes a few non-ASCII letters, so non-ASCII text skips this gate).
_SECRET_GATE = re.compile(r"[:=]>?\s*[\"']([A-Za-z0-9+/=_\-.]{16,128})[\"']")


def _entropy(s: str) -> float:
    c = Counter(s)
    return -sum(n / len(s) * math.log2(n / len(s)) for n in c.values())


def looks_random(s: str, min_entropy: float) -> bool:
    classes = sum(bool(re.search(p, s)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return classes >= 2 and any(ch.isdigit() for ch in s) and _entropy(s) >= min_entropy


def _ip_is_pii(text: str, start: int, value: str) -> bool:
    if ":" in value and (len([g for g in value.split(":") if g]) < 3 or not any(c.isdigit() for c in value)):
        return False  # 'a::b', 'dead::beef' are C++/Rust paths far more often than addresses
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    if not ip.is_global or value in PUBLIC_DNS:
        return False
    if VERSION_CONTEXT.search(text[max(0, start - 40):start]):
        return False
    return True


def _run_start(text: str, i: int, char: re.Pattern) -> int:
    while i > 0 and char.match(text, i - 1):
        i -= 1
    return i


def _emails(text: str) -> list[re.Match]:
    """EMAIL.finditer(text), tried only at the start of the local part before each "@"."""
    out: list[re.Match] = []
    end, at = 0, text.find("@")
    while at >= 0:
        start = _run_start(text, at, _EMAIL_LOCAL_CHAR)
        if start >= end:  # finditer goes on after the previous match
            m = EMAIL.match(text, start)
            if m:
                out.append(m)
                end = m.end()
        at = text.find("@", at + 1)
    return out


def _ipv6s(text: str) -> list[re.Match]:
    """IPV6.finditer(text), tried only at the start of the [\\w:.] run around each site."""
    out: list[re.Match] = []
    run_end = -1
    for site in IPV6_SITE.finditer(text):
        if site.start() < run_end:  # a run already tried (once per run: no quadratic cost on "1:2:1:2:...")
            continue
        start = _run_start(text, site.start(), _IPV6_RUN_CHAR)
        run_end = _IPV6_RUN.match(text, site.start()).end()
        m = IPV6.match(text, start)
        if m:
            out.append(m)
    return out


def find_pii(text: str, cfg: PIIConfig) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) spans, earliest first; keys win over other kinds."""
    spans: list[tuple[int, int, str]] = []
    if cfg.redact_keys:
        if KEY_GATE.search(text):
            for name, pat in KEY_PATTERNS:
                if any(a in text for a in KEY_ANCHORS[name]):
                    spans += [(m.start(), m.end(), "key") for m in pat.finditer(text)]
        if text.isascii():
            found = _SECRET_ASSIGN_LOWER.finditer(text.lower()) if _SECRET_GATE.search(text) else ()
        else:
            found = SECRET_ASSIGN.finditer(text)
        for m in found:
            if looks_random(text[m.start(1):m.end(1)], cfg.min_secret_entropy):
                spans.append((m.start(1), m.end(1), "key"))
    if cfg.redact_emails and "@" in text:
        spans += [(m.start(), m.end(), "email") for m in _emails(text)]
    if cfg.redact_ips:
        found = IPV4.finditer(text) if IPV4_GATE.search(text) else ()
        spans += [(m.start(), m.end(), "ip_address") for m in found if _ip_is_pii(text, m.start(), m.group())]
        found = _ipv6s(text) if IPV6_GATE.search(text) else ()
        spans += [(m.start(), m.end(), "ip_address") for m in found if _ip_is_pii(text, m.start(), m.group())]
    return resolve_overlaps(spans)


_KIND_RANK = {"key": 0, "email": 1, "ip_address": 2}


def resolve_overlaps(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Non-overlapping spans, earliest first; at the same start keys win, then the longest."""
    out: list[tuple[int, int, str]] = []
    for s in sorted(spans, key=lambda s: (s[0], _KIND_RANK[s[2]], -s[1])):
        if not out or s[0] >= out[-1][1]:
            out.append(s)
    return out


def redact(text: str, cfg: PIIConfig) -> tuple[str, dict[str, int]]:
    """Text with PII replaced by placeholders, and counts per kind (only kinds found)."""
    spans = find_pii(text, cfg)
    if not spans:
        return text, {}
    place = {"email": cfg.email_placeholder, "ip_address": cfg.ip_placeholder, "key": cfg.key_placeholder}
    parts, pos = [], 0
    counts: Counter = Counter()
    for start, end, kind in spans:
        parts.append(text[pos:start])
        parts.append(place[kind])
        counts[kind] += 1
        pos = end
    parts.append(text[pos:])
    return "".join(parts), dict(sorted(counts.items()))
