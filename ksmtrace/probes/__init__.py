"""BPF probe set: program rendering, the bcc adapter and the live event source."""
