"""PII redaction's gates (literal anchors, cheap necessary conditions, lower-cased secret search) find
exactly the spans of running every pattern over the whole text, as the plain passes did."""
from __future__ import annotations

import random

from megatron_snow.phase1 import pii
from megatron_snow.phase1.pii import PIIConfig, find_pii, redact


def plain_find_pii(text: str, cfg: PIIConfig) -> list[tuple[int, int, str]]:
    """Every pattern over the whole text (the implementation before the gates), as the reference."""
    spans: list[tuple[int, int, str]] = []
    if cfg.redact_keys:
        for _, pat in pii.KEY_PATTERNS:
            spans += [(m.start(), m.end(), "key") for m in pat.finditer(text)]
        for m in pii.SECRET_ASSIGN.finditer(text):
            if pii.looks_random(m.group(1), cfg.min_secret_entropy):
                spans.append((m.start(1), m.end(1), "key"))
    if cfg.redact_emails:
        spans += [(m.start(), m.end(), "email") for m in pii.EMAIL.finditer(text)]
    if cfg.redact_ips:
        for pat in (pii.IPV4, pii.IPV6):
            spans += [(m.start(), m.end(), "ip_address") for m in pat.finditer(text)
                      if pii._ip_is_pii(text, m.start(), m.group())]
    return pii.resolve_overlaps(spans)  # shared: the test compares how spans are found, not how they are merged


# Pieces that come close to every pattern (and to the gates' edges), glued at random.
PIECES = [
    "52.14.3.9", "8.8.8.8", "1.2.3", "v1.2.3.4", "version = '9.9.9.9'", "300.1.1.1", "10.0.0.1", "0.0.0.0",
    "2a00:1450:4001:82b::200e", "fe80::1", "std::vector", "a:b:c", "dead:beef:cafe:1", "::", ":1:2:", "2001:db8::",
    "2606:4700:4700::1111", "x[1:2:3]", "AKIAIOSFODNN7EXAMPL3", "AKIA", "ASIA0123456789ABCDEF", "ghp_",
    "gho_" + "a" * 36, "github_pat_" + "B" * 60, "xoxb-1234567890-abc", "xox",
    "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", "AIza",
    "sk_live_" + "a1" * 10, "rk_live_x", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmN",
    "eyJ", ".eyJ", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", "-----BEGIN ",
    "PASSWORD = 'Zx81kLmN0pQ2rS3tU4vW'", "Secret_Token: \"aB3dE6gH9jK2mN5pQ8\"", "API-KEY=>'Q1w2E3r4T5y6U7i8O9'",
    "passwd='hunter2hunter2hunter2'", "token='aB3dE6gH9jK2mN5p'",
    "secret:\"0123456789abcdeF\"", "client_secret = 'x'", "token", "ApiKey", "ACCESS_KEY", "auth-key",
    "dev@mail.example.com", "a@b.co", "python@2.7", "user@localhost", "_x@y.org", "x.y+z@sub.dom.io", "@", "@@a.bc",
    "ſecret = 'aB3dE6gH9jK2mN5pQ8'", "toKen", "apı_key = 'aB3dE6gH9jK2mN5pQ8x'", "İ", "é", "ß",
    " ", "\n", "\t", "=", ":", ".", "'", '"', "-", "_", "0", "9", "a", "F", "Z",
]


def _texts(n: int, seed: int = 0):
    rng = random.Random(seed)
    yield from PIECES  # alone: a gate is decided per text, so a piece must also be tried without others
    for _ in range(n):
        yield "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 40)))
        yield "".join(rng.choice("0123456789abcdefABCDEF.:@_-='\" \nxkKſıİ") for _ in range(rng.randint(1, 80)))


def test_gated_spans_equal_the_plain_passes():
    configs = [PIIConfig(), PIIConfig(redact_emails=False), PIIConfig(redact_keys=False, redact_ips=False),
               PIIConfig(min_secret_entropy=0.0)]
    found = 0
    for text in _texts(3000):
        for cfg in configs:
            got = find_pii(text, cfg)
            assert got == plain_find_pii(text, cfg), text
            found += bool(got)
    assert found > 1000  # the pieces do make spans of every kind
    kinds = {k for t in _texts(300) for _, _, k in find_pii(t, PIIConfig())}
    assert kinds == {"key", "email", "ip_address"}


def test_redaction_unchanged_on_a_realistic_file():
    text = ('"""Client."""\nimport os\nAPI_KEY = "Zx81kLmN0pQ2rS3tU4vW"\nHOST = "52.14.3.9"  # prod\n'
            "LOCAL = '127.0.0.1'\n__version__ = '1.2.3.4'\n# mail dev@mail.example.com\n"
            "@property\ndef f(self):\n    return self.x[1:2]\n")
    out, counts = redact(text, PIIConfig())
    assert counts == {"email": 1, "ip_address": 1, "key": 1}
    assert "Zx81" not in out and "52.14.3.9" not in out and "127.0.0.1" in out and "1.2.3.4" in out
