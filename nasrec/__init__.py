"""nasrec."""
