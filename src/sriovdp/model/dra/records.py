"""A prepared claim as JSON: one entry of the claim checkpoint, and the record its CDI spec
carries, from which a damaged checkpoint is rebuilt.

Entry (the checkpoint's ``claims.<uid>``)::

    {"namespace": "default", "name": "c1", "specFile": "sriov-dra-<uid>.yaml",
     "devices": [{"requestNames": ["nic"], "poolName": "worker-1",
                  "deviceName": "0000-3b-02-1", "cdiDeviceIds": ["..."],
                  "resourceName": "intel.com/sriov_net", "deviceId": "0000:3b:02.1"}],
     "deviceInfo": [["intel.com/sriov_net", "0000:3b:02.1"]]}

Record: the first line of the claim's CDI spec, a YAML comment (CDI 0.5.0 specs allow no
annotations, and the CDI library rejects unknown fields; every YAML reader skips a
comment), holding the entry with the driver and the claim UID::

    # sriovdp-claim: {"driver": "sriov.network.k8s.io", "uid": "<uid>", "namespace": ...}
"""

from __future__ import annotations

import json
from typing import Any

from sriovdp.model.dra.prepare import ClaimRef, PreparedClaim, PreparedDevice

RECORD_PREFIX = "# sriovdp-claim: "


def claim_entry(claim: PreparedClaim) -> dict[str, Any]:
    """The checkpoint entry of ``claim`` (its UID is the key, not in the entry)."""
    return {"namespace": claim.ref.namespace, "name": claim.ref.name,
            "specFile": claim.spec_file,
            "devices": [{"requestNames": list(d.request_names), "poolName": d.pool_name,
                         "deviceName": d.device_name, "cdiDeviceIds": list(d.cdi_device_ids),
                         "resourceName": d.resource_name, "deviceId": d.device_id}
                        for d in claim.devices],
            "deviceInfo": [list(pair) for pair in claim.device_info]}


def claim_from_entry(uid: str, doc: dict[str, Any]) -> PreparedClaim:
    """The claim of a checkpoint entry (its spec document left out).

    Raises:
        KeyError, TypeError, ValueError, AttributeError: not an entry.
    """
    devices = tuple(
        PreparedDevice(tuple(d["requestNames"]), d["poolName"], d["deviceName"],
                       tuple(d["cdiDeviceIds"]), str(d.get("resourceName", "")),
                       str(d.get("deviceId", "")))
        for d in doc["devices"]
    )
    info = tuple((r, i) for r, i in doc.get("deviceInfo", []))
    return PreparedClaim(ClaimRef(doc["namespace"], doc["name"], uid), doc.get("specFile"),
                         None, devices, info)


def claim_record(claim: PreparedClaim, driver: str) -> str:
    """The record line of ``claim`` (no newline), e.g. ``# sriovdp-claim: {...}``."""
    doc = {"driver": driver, "uid": claim.ref.uid, **claim_entry(claim)}
    return RECORD_PREFIX + json.dumps(doc, separators=(",", ":"))


def claim_from_record(line: str, driver: str) -> PreparedClaim | None:
    """The claim of a record line; None when it is another driver's.

    Raises:
        ValueError: the line is not a record (the message says why).
    """
    if not line.startswith(RECORD_PREFIX):
        raise ValueError("no claim record on its first line")
    try:
        doc = json.loads(line[len(RECORD_PREFIX):])
        if doc["driver"] != driver:
            return None
        return claim_from_entry(str(doc["uid"]), doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"a damaged claim record ({exc!r})") from exc
