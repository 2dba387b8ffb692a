#!/usr/bin/env python3
"""Verifies an exported Plinth audit chain without Plinth.

Reads the export format (`core-server audit export`: one JSON object per
line) and recomputes every link from the canonical form the AuditEvent
message of proto/plinth/audit/v1/audit.proto specifies:

    hash = SHA-256(previous_hash || RFC 8785 JSON of the listed fields)

Exit status 0 when every event verifies, 1 at the first broken link (its
sequence is printed), 2 when the input cannot be read. Standard library
only: RFC 8785 is implemented below.

    python3 tools/verify_audit_chain.py chain.jsonl
"""

import hashlib
import json
import math
import sys

# The fields the canonical form lists (every one always present).
CANONICAL_FIELDS = (
    "action", "actor", "chain", "company_id", "details", "id", "idempotency_key",
    "occurred_at", "outcome", "recorded_at", "request_id", "resource_id",
    "resource_type", "sequence", "tenant_id",
)
ACTOR_FIELDS = ("api_key_id", "module_id", "peer_address", "user_claimed", "user_id")
GENESIS = bytes(32)


def canonical_number(value):
    """An IEEE 754 double as ECMAScript's Number.prototype.toString writes it."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("RFC 8785 has no NaN or infinity")
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript does.
    mantissa, _, exponent = repr(abs(number)).partition("e")
    integer, _, fraction = mantissa.partition(".")
    all_digits = integer + fraction
    leading_zeros = len(all_digits) - len(all_digits.lstrip("0"))
    digits = all_digits.lstrip("0").rstrip("0")
    # The value is 0.<digits> times ten to the power `point`.
    point = len(integer) + int(exponent or 0) - leading_zeros
    if len(digits) <= point <= 21:
        return sign + digits + "0" * (point - len(digits))
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    shown = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return sign + mantissa + "e" + ("+" if shown > 0 else "-") + str(abs(shown))


def canonical(value):
    """RFC 8785: sorted keys (by UTF-16 code units), no whitespace."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return canonical_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
        return "{" + ",".join(canonical(key) + ":" + canonical(value[key]) for key in keys) + "}"
    raise ValueError(f"not JSON: {value!r}")


def event_hash(previous_hash, event):
    fields = {name: event[name] for name in CANONICAL_FIELDS}
    fields["actor"] = {name: event["actor"][name] for name in ACTOR_FIELDS}
    text = canonical(fields).encode("utf-8")
    return hashlib.sha256(previous_hash + text).digest()


def verify(lines):
    """The first broken sequence, or None; and how many events verified."""
    previous = None
    expected_sequence = None
    checked = 0
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        sequence = event["sequence"]
        stated_previous = bytes.fromhex(event["previous_hash"])
        if previous is None:
            # An export may start mid-chain: trust its first link only when
            # it is the chain's start.
            previous = GENESIS if sequence == 1 else stated_previous
            expected_sequence = sequence
        intact = (
            sequence == expected_sequence
            and stated_previous == previous
            and event_hash(previous, event).hex() == event["hash"]
        )
        if not intact:
            return expected_sequence, checked
        previous = bytes.fromhex(event["hash"])
        expected_sequence += 1
        checked += 1
    return None, checked


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    try:
        with open(sys.argv[1], encoding="utf-8") as export:
            broken, checked = verify(export)
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot read the export: {error}", file=sys.stderr)
        return 2
    if broken is not None:
        print(f"broken at sequence {broken} ({checked} events verified before it)")
        return 1
    print(f"ok: {checked} events verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
