"""Pure model: ids, devices, selectors, config, pools, allocation, diff. No I/O here."""
