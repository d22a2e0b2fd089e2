"""sriovdp.testing."""
