"""medrl clinical."""
