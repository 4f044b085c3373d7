"""The volume-profile service: profiles from stored 1m footprints plus the live minute (docs/volume-profile.md)."""
