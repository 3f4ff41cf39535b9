"""The data layer: the pool and its edge, SQL and migrations, loaders, changes of access."""
