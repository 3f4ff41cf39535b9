"""Development only: embedded PostgreSQL, demo data, the development identity and provider."""
