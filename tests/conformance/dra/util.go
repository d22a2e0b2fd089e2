package main

import (
	"flag"
	"runtime/debug"
)

// flagSet sets one klog flag when a value is given (DRA_PEER_V=4 for verbose logs).
func flagSet(name, value string) error {
	if value == "" {
		return nil
	}
	return flag.Set(name, value)
}

// moduleVersion is the version of a module this binary was built from.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == path {
			return dep.Version
		}
	}
	return "unknown"
}
