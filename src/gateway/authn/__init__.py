"""Who is calling: bearer tokens verified against the provider's keys, and their accounts."""
