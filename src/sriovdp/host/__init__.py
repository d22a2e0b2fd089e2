"""Readers and writers of the host: every function takes a :class:`HostPaths` root."""
