"""The JSON form of a prepared claim: checkpoint entries and the record in its CDI spec."""

from __future__ import annotations

import pytest
import yaml

from sriovdp.model.dra.prepare import ClaimRef, PreparedClaim, PreparedDevice
from sriovdp.model.dra.records import (
    claim_entry,
    claim_from_entry,
    claim_from_record,
    claim_record,
)

UID = "7d3c2b1a-0000-4000-8000-00000000c1a1"
DRIVER = "sriov.network.k8s.io"
CLAIM = PreparedClaim(
    ClaimRef("default", "c1", UID), f"sriov-dra-{UID}.yaml", None,
    (PreparedDevice(("nic",), "worker-1", "0000-3b-02-1", (f"{DRIVER}/claim={UID}-nic",),
                    "intel.com/sriov_net", "0000:3b:02.1"),),
    (("intel.com/sriov_net", "0000:3b:02.1"),))


def test_a_claim_is_the_same_when_its_entry_is_read_back() -> None:
    assert claim_from_entry(UID, claim_entry(CLAIM)) == CLAIM


def test_a_claim_is_the_same_when_its_record_is_read_back() -> None:
    assert claim_from_record(claim_record(CLAIM, DRIVER), DRIVER) == CLAIM


def test_a_record_is_one_yaml_comment_line_when_put_before_a_spec() -> None:
    record = claim_record(CLAIM, DRIVER)
    assert "\n" not in record
    assert yaml.safe_load(f"{record}\ncdiVersion: 0.5.0\n") == {"cdiVersion": "0.5.0"}


def test_a_record_is_skipped_when_it_is_another_drivers() -> None:
    assert claim_from_record(claim_record(CLAIM, "sriov.example.com"), DRIVER) is None


@pytest.mark.parametrize("line", ["cdiVersion: 0.5.0", "# sriovdp-claim: {\"driver\"",
                                  "# sriovdp-claim: {\"driver\": \"sriov.network.k8s.io\"}"])
def test_a_record_is_refused_when_it_is_missing_or_damaged(line: str) -> None:
    with pytest.raises(ValueError):
        claim_from_record(line, DRIVER)
