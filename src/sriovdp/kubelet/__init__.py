"""sriovdp.kubelet."""
