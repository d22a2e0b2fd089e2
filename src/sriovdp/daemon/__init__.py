"""sriovdp.daemon."""
