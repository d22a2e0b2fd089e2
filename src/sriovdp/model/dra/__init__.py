"""DRA (Dynamic Resource Allocation, ``resource.k8s.io/v1``): the pure half of DRA mode.

* :mod:`.names` — driver names, device names and attribute names as the API validates them.
* :mod:`.attributes` — the attributes one pool device is published with.
* :mod:`.slices` — the ResourceSlices a node publishes for its pools (split, generation,
  health).
* :mod:`.publish` — the generation to continue from after a restart, and what to create,
  replace and delete to turn the apiserver's slices into the wanted ones.
* :mod:`.prepare` — what NodePrepareResources does for one claim: its CDI spec and CDI ids.
"""
