"""What a document may ask before it runs: limits, rate limits, trusted documents."""
