"""medrl dermiq."""
