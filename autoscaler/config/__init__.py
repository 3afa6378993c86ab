"""YAML in, validated models and frozen core specs out; the only place that knows the file."""
