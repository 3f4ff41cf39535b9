"""The policy as data: the table every layer reads, the SMART scopes, its printed forms."""
