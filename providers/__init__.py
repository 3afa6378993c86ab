"""Instance-group adapters. Each module is one provider, registered by entry point; they never
import each other."""
