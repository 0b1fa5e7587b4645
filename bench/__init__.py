"""medrl bench."""
