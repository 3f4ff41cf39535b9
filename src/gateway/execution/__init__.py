"""Running an operation: compiled plans of trusted documents, and the executor."""
