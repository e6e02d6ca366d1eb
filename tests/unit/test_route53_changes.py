"""kind = "route53": TXT values split into 255-octet character-strings and changes cut into
ChangeBatch chunks within Route 53's limits, which moto (the emulator the integration tests
use) does not check."""

from __future__ import annotations

import base64
import itertools
import math
import secrets

import pytest

from rotator.adapters.dns.route53.changes import (
    MAX_CHARS,
    MAX_RECORDS,
    check_value,
    chunks,
    cost,
    delete,
    last_per_name,
    string_lengths,
    txt_value,
    upsert,
)
from rotator.domain.errors import PublishError
from rotator.domain.reasons import Reason
from rotator.ports import RecordChange

ZONE = "dkim.esp.test"
RSA2048 = "v=DKIM1; k=rsa; p=" + base64.b64encode(secrets.token_bytes(294)).decode()
RSA4096 = "v=DKIM1; k=rsa; p=" + base64.b64encode(secrets.token_bytes(436)).decode()


def name(i: int | str) -> str:
    return f"s{i}.myesp._domainkey.{ZONE}."


# --- TXT values --------------------------------------------------------------------------


def test_an_rsa_4096_record_is_three_quoted_strings() -> None:
    assert 600 <= len(RSA4096) <= 765
    value = txt_value(name(1), RSA4096)
    assert string_lengths(value) == [255, 255, len(RSA4096) - 510]
    assert value.count('"') == 6 and value.replace('" "', "").strip('"') == RSA4096
    assert txt_value(name(1), "v=DKIM1; p=") == '"v=DKIM1; p="'


def test_a_character_string_over_255_octets_is_refused_before_sending() -> None:
    check_value(name(1), '"' + "a" * 255 + '" b')
    with pytest.raises(PublishError, match="a TXT character-string of 256 octets") as err:
        check_value(name(1), '"' + "a" * 256 + '"')
    assert err.value.code == Reason.RECORD_INVALID
    # escapes are one octet each, as Route 53 counts them
    assert string_lengths(r'"a\"b\\c\065" plain') == [6, 5]
    with pytest.raises(PublishError, match="not printable ASCII"):
        txt_value(name(1), 'v=DKIM1; n="quoted"; p=')


# --- ChangeBatch chunks ------------------------------------------------------------------


def test_3000_changes_are_cut_within_both_limits_an_upsert_counting_twice() -> None:
    changes = []
    for i in range(3000):
        if i % 3:
            changes.append(upsert(name(i), 300, txt_value(name(i), RSA2048)))
        else:
            rrset = {"Name": name(i), "Type": "TXT", "TTL": 60}
            changes.append(delete({**rrset, "ResourceRecords": [{"Value": '"v=DKIM1; p="'}]}))
    batches = chunks(changes)
    assert [c for b in batches for c in b] == changes  # all of them, in order
    for batch in batches:
        records = sum(cost(c)[0] for c in batch)
        chars = sum(cost(c)[1] for c in batch)
        assert records <= MAX_RECORDS and chars <= MAX_CHARS
    upsert_chars = 2 * (len(RSA2048) + 5)  # two quoted strings and a space, counted twice
    assert cost(changes[1]) == (2, upsert_chars)
    assert cost(changes[0]) == (1, len('"v=DKIM1; p="'))
    # packed: no batch could have taken the next batch's first change
    for batch, following in itertools.pairwise(batches):
        chars = sum(cost(c)[1] for c in batch) + cost(following[0])[1]
        records = sum(cost(c)[0] for c in batch) + cost(following[0])[0]
        assert chars > MAX_CHARS or records > MAX_RECORDS
    # the characters bind here (2,000 RSA-2048 UPSERTs), not the 1,000 values
    assert len(batches) == math.ceil(sum(cost(c)[1] for c in changes) / MAX_CHARS) == 53


def test_small_upserts_are_cut_at_500_and_deletes_at_1000() -> None:
    ups = [upsert(name(i), 60, '"v=DKIM1; p="') for i in range(1200)]
    assert [len(b) for b in chunks(ups)] == [500, 500, 200]
    gone = [
        delete({"Name": name(i), "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": '"x"'}]})
        for i in range(1200)
    ]
    assert [len(b) for b in chunks(gone)] == [1000, 200]


def test_one_change_per_name_the_last_winning() -> None:
    a, b, c = (RecordChange(name(1), 60, t) for t in ("one", "two", None))
    other = RecordChange(name(2).upper(), 60, "x")
    assert list(last_per_name([(x.name, x) for x in (a, other, b, c)]).items()) == [
        (name(2), other),
        (name(1), c),
    ]
