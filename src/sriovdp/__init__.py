"""sriovdp: a Python SR-IOV network device plugin for Kubernetes."""

__version__ = "0.1.0"
