"""Page fingerprints: salted hashes of every present page of mergeable memory, over time."""
