"""Built-in scaling policies. Each module holds one policy; each is registered by entry point."""
