"""Files on disk: where they live, the config, each stream's state and its lifecycle, locked writes."""
