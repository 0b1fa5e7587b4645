"""medrl app."""
